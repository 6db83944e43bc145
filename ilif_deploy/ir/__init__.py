"""Intermediate graph: node dataclasses, the Graph container and its checks."""
from .graph import Graph, GraphError, infer_shape
from .nodes import (NODE_TYPES, AdaptiveAvgPool2d, Add, Affine, AvgPool2d, Conv2d, Flatten, Input, Linear,
                    LeakyIntegrator, MaxPool2d, Neuron, Node, Output, SumPool2d)

__all__ = ["Graph", "GraphError", "infer_shape", "NODE_TYPES", "Node", "Input", "Output", "Conv2d", "Linear",
           "Affine", "AvgPool2d", "SumPool2d", "MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Add", "Neuron",
           "LeakyIntegrator"]
