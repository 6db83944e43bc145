"""Intermediate graph: node dataclasses, the Graph container and its checks."""
from ..errors import GraphError
from .graph import Graph, infer_shape
from .nodes import (NODE_TYPES, AdaptiveAvgPool2d, Add, Affine, AvgPool2d, Conv2d, Flatten, Input, LeakyIntegrator,
                    Linear, MaxPool2d, Neuron, Node, Output, RecurrentNeuron, ReLU, SPIKING, SumPool2d, node_from_dict)

__all__ = ["Graph", "GraphError", "infer_shape", "NODE_TYPES", "Node", "Input", "Output", "Conv2d", "Linear",
           "Affine", "AvgPool2d", "SumPool2d", "MaxPool2d", "AdaptiveAvgPool2d", "Flatten", "Add", "Neuron",
           "LeakyIntegrator", "RecurrentNeuron", "ReLU", "SPIKING", "node_from_dict"]
