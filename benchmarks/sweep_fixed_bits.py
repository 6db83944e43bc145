"""Fixed-point bit widths vs accuracy and spike agreement, from the torch engine (bit-exact with Lava).

    .venv/bin/python benchmarks/sweep_fixed_bits.py [--out docs/img]

For the digits ILIF and LIF models on all 450 test samples: weight mantissas of 8, 6 and 4 bits and
12, 10, 8 or 6 fractional bits of the 24-bit neuron state (analog input: 8 fractional bits), each
against the float torch runtime in Lava's arithmetic (BN folded, float64 synapses).  Prints a Markdown
table (docs/lava.md carries it) and, when chromium is installed, ``fixed_point_sweep.png`` under ``--out``
(a plotly figure rendered by headless chromium).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from ilif_deploy.converters import open_graph
from ilif_deploy.converters.lava.fixed import FixedPoint
from ilif_deploy.converters.lava.runner import simulate
from ilif_deploy.data import open_data

WEIGHT_BITS = (8, 6, 4)
FRAC_BITS = (16, 12, 10, 8, 6)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="docs/img", help="folder for the plot (default docs/img)")
    args = p.parse_args(argv)
    rows = []
    for model in ("digits_ilif", "digits_lif"):
        g = open_graph(f"example:{model}")
        data = open_data("digits", input_shape=g.input_shape, timesteps=g.timesteps)
        for wb in WEIGHT_BITS:
            for fb in FRAC_BITS:
                rep = simulate(g, data=data, samples=None, mode="fixed", engine="torch", batch=450, progress=False,
                               fixed=FixedPoint(frac_bits=fb, input_frac_bits=8, weight_bits=wb))
                rows.append(dict(model=model, weight_bits=wb, frac_bits=fb, accuracy=rep.accuracy_candidate,
                                 float_accuracy=rep.accuracy_reference, spikes=rep.overall_spike_agreement,
                                 predictions=rep.prediction_agreement,
                                 saturated=sum(rep.details["overflows"].values())))
    print("| model | weight bits | state frac bits | accuracy | float accuracy | spike agreement | same prediction "
          "| saturated |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['weight_bits']} | {r['frac_bits']} | {r['accuracy']:.2%} | "
              f"{r['float_accuracy']:.2%} | {r['spikes']:.4f} | {r['predictions']:.2%} | {r['saturated']} |")
    plot(rows, Path(args.out))
    return 0


def plot(rows, out: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out.mkdir(parents=True, exist_ok=True)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy (450 digits test samples)",
                                                        "spike agreement with float"))
    colors = {8: "#1f77b4", 6: "#ff7f0e", 4: "#d62728"}
    for model, dash in (("digits_ilif", "solid"), ("digits_lif", "dot")):
        for wb in WEIGHT_BITS:
            sel = [r for r in rows if r["model"] == model and r["weight_bits"] == wb]
            name = f"{model.split('_')[1].upper()}, {wb}-bit weights"
            for col, key in ((1, "accuracy"), (2, "spikes")):
                fig.add_trace(go.Scatter(x=[r["frac_bits"] for r in sel], y=[r[key] for r in sel], name=name,
                                         legendgroup=name, showlegend=col == 1, mode="lines+markers",
                                         line=dict(dash=dash, color=colors[wb])), row=1, col=col)
    fig.update_xaxes(title_text="fractional bits of the 24-bit state", autorange="reversed")
    fig.update_yaxes(tickformat=".1%", row=1, col=1)
    fig.update_yaxes(tickformat=".3f", row=1, col=2)
    fig.update_layout(width=1100, height=430, margin=dict(l=60, r=20, t=40, b=50))
    fig.update_layout(modebar=dict(remove=["toImage", "zoom", "pan", "select", "lasso2d", "zoomIn", "zoomOut",
                                           "autoScale", "resetScale"]))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "fixed_point_sweep.html"  # plotly.js inline (4.8 MB): rendered, not kept
        fig.write_html(html, include_plotlyjs=True, config={"displayModeBar": False})
        if not chromium:
            print("\nchromium not found: no plot written")
            return
        png = out / "fixed_point_sweep.png"
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp}/profile",
                        f"--screenshot={png.resolve()}", "--window-size=1100,430", "--hide-scrollbars",
                        "--virtual-time-budget=5000", html.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"\nwrote {png}")


if __name__ == "__main__":
    raise SystemExit(main())
