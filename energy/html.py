"""Interactive HTML report (plotly, with plotly.js embedded so it opens without internet)."""
from __future__ import annotations

import html
from typing import Optional

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .columns import ACS, ANN_ENERGY, CONTINUOUS, FIRING, MACS, NEURON_ENERGY, SHORT, SYNAPTIC_ENERGY
from .columns import ENERGY as PJ

#: one colour pair per compared model (main, light)
COLOURS = [("#1f77b4", "#aec7e8"), ("#ff7f0e", "#ffbb78")]


def _order(reports, columns) -> list:
    """Names of layers with a non-zero value in ``columns``, in graph order (union over the
    reports), so every bar chart reads from input to output."""
    names = []
    for rep in reports:
        df = rep.frame
        nz = df[(df[list(columns)] > 0).any(axis=1)]
        names += [n for n in nz["name"] if n not in names]
    return names


def _scale_toggle(fig: go.Figure) -> go.Figure:
    """Linear y axis by default (small differences such as ILIF/LIF = 0.988 stay visible), a button for log."""
    fig.update_layout(yaxis_type="linear", updatemenus=[dict(
        type="buttons", direction="left", x=1.0, xanchor="right", y=1.15, yanchor="top", showactive=True,
        buttons=[dict(label="linear", method="relayout", args=[{"yaxis.type": "linear"}]),
                 dict(label="log", method="relayout", args=[{"yaxis.type": "log"}])])])
    return fig


def _energy_figure(reports) -> go.Figure:
    fig = go.Figure()
    for rep, (main, light) in zip(reports, COLOURS):
        df = rep.frame[rep.frame[PJ] > 0]
        fig.add_bar(x=df["name"], y=df[SYNAPTIC_ENERGY], name=f"{rep.model_name}: synaptic",
                    offsetgroup=rep.model_name, marker_color=main, hovertemplate="%{x}<br>%{y:.4g} pJ")
        if (df[NEURON_ENERGY] > 0).any():
            fig.add_bar(x=df["name"], y=df[NEURON_ENERGY], name=f"{rep.model_name}: neuron updates",
                        offsetgroup=rep.model_name, base=df[SYNAPTIC_ENERGY], marker_color=light,
                        hovertemplate="%{x}<br>%{y:.4g} pJ")
    ann = reports[0].frame
    ann = ann[ann[ANN_ENERGY] > 0]
    fig.add_scatter(x=ann["name"], y=ann[ANN_ENERGY], mode="markers", name="ANN baseline",
                    marker=dict(symbol="diamond", size=9, color="black"), hovertemplate="%{x}<br>%{y:.4g} pJ")
    fig.update_xaxes(categoryorder="array", categoryarray=_order(reports, [PJ, ANN_ENERGY]))
    fig.update_layout(title=f"Energy per layer [pJ/inference] ({reports[0].energy_model.name})",
                      barmode="group", yaxis_title="pJ / inference", height=450)
    return _scale_toggle(fig)


def _ops_figure(reports) -> go.Figure:
    fig = go.Figure()
    for rep, colours in zip(reports, COLOURS):
        df = rep.frame
        for col, label, colour in ((ACS, "ACs", colours[0]), (MACS, "MACs", colours[1])):
            sel = df[df[col] > 0]
            if len(sel):
                fig.add_bar(x=sel["name"], y=sel[col], name=f"{rep.model_name}: {label}", marker_color=colour,
                            hovertemplate="%{x}<br>%{y:.4g} " + label)
    fig.update_xaxes(categoryorder="array", categoryarray=_order(reports, [ACS,
                                                                           MACS]))
    fig.update_layout(title="Synaptic operations per layer [ops/inference]", barmode="group",
                      yaxis_title="ops / inference", height=450)
    return _scale_toggle(fig)


def _rates_figure(reports) -> go.Figure:
    zmax = max(float(r.rates.to_numpy().max()) if r.rates.size else 0.0 for r in reports) or 1.0
    fig = make_subplots(rows=1, cols=len(reports), subplot_titles=[r.model_name for r in reports],
                        horizontal_spacing=0.12)
    for i, rep in enumerate(reports, start=1):
        fig.add_heatmap(z=rep.rates.to_numpy(), x=list(rep.rates.columns), y=list(rep.rates.index),
                        zmin=0, zmax=zmax, colorscale="Viridis", showscale=(i == len(reports)),
                        colorbar=dict(title="spikes/neuron/step"), texttemplate="%{z:.3g}",
                        hovertemplate="%{y} %{x}<br>rate %{z:.4f}<extra></extra>", row=1, col=i)
        fig.update_yaxes(autorange="reversed", row=1, col=i)
    fig.update_layout(title="Firing rate per neuron layer and time step [spikes/neuron/step]",
                      height=max(300, 60 * max(len(r.rates) for r in reports) + 150))
    return fig


def _compare_figure(a, b) -> go.Figure:
    # a rate (spikes per neuron and step) and a share of neurons are different quantities: separate axes
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Energy per layer [pJ/inference]",
                                                        "Firing rate [spikes/neuron/step]",
                                                        "Continuous firing [share of neurons, > T/2 steps]"))
    for rep, (main, light) in zip((a, b), COLOURS):
        df = rep.frame[rep.frame[PJ] > 0]
        fig.add_bar(x=df["name"], y=df[PJ], name=f"{rep.model_name} energy", marker_color=main, row=1, col=1)
        nf = rep.frame[rep.frame["op"] == "neuron"]
        fig.add_bar(x=nf["name"], y=nf[FIRING], name=f"{rep.model_name} firing rate",
                    marker_color=main, marker_pattern_shape="/", row=1, col=2,
                    hovertemplate="%{x}<br>%{y:.4g} spikes/neuron/step")
        fig.add_bar(x=nf["name"], y=nf[CONTINUOUS], name=f"{rep.model_name} continuous firing",
                    marker_color=light, row=1, col=3, hovertemplate="%{x}<br>%{y:.2%} of neurons")
    fig.update_yaxes(title_text="pJ / inference", row=1, col=1)
    fig.update_yaxes(title_text="spikes / neuron / step", row=1, col=2)
    fig.update_yaxes(title_text="share of neurons", tickformat=".0%", row=1, col=3)
    fig.update_layout(title=f"{a.model_name} vs {b.model_name}", barmode="group", height=450)
    return fig


def report_html(rep, compare: Optional[object] = None, comparison=None) -> str:
    """A standalone HTML page for ``rep`` (and ``compare`` side by side, e.g. LIF vs ILIF, with
    ``comparison``, their totals as a DataFrame)."""
    reports = [rep] + ([compare] if compare is not None else [])
    figs = []
    if compare is not None:
        figs.append(_compare_figure(rep, compare))
    figs += [_energy_figure(reports), _ops_figure(reports), _rates_figure(reports)]
    divs = [pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
            for i, f in enumerate(figs)]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             f"<title>Energy report: {html.escape(rep.title(compare))}</title>",
             "<style>body{font-family:sans-serif;margin:20px} table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right} th{white-space:normal;max-width:9em} "
             ".wide{overflow-x:auto} "
             "pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}</style>",
             "</head><body>", f"<h1>Energy report: {html.escape(rep.title(compare))}</h1>"]
    for r in reports:
        parts.append(f"<pre>{html.escape(r.headline())}</pre>")
    parts.append("<p>Conventions: " + html.escape(", ".join(f"{k}={v}" for k, v in rep.conventions.to_dict().items()))
                 + f"; energy model {html.escape(rep.energy_model.name)}; neuron updates "
                 + ("counted" if rep.count_neurons else "not counted") + ". All counts per inference.</p>")
    if compare is not None:
        parts.append("<h2>Comparison</h2>" + comparison.to_html(index=False, float_format="%.6g"))
        verdict = rep.verdict(compare)
        if verdict is not None:
            parts.append(f"<h2>Verdict: {html.escape(rep.model_name)} vs {html.escape(compare.model_name)} under "
                         f"each energy model</h2>" + verdict.to_html(index=False, float_format="%.6g"))
    for title, df in rep.summary_tables(compare):
        parts.append(f"<h2>{html.escape(title)}</h2>" + df.to_html(index=False, float_format="%.6g", na_rep=""))
    parts += divs
    for r in reports:
        # the short columns fit 1400 px (energy included); every column below, folded
        parts.append(f"<h2>Per layer: {html.escape(r.model_name)}</h2>"
                     + r.frame[SHORT].to_html(index=False, float_format="%.6g", na_rep="")
                     + "<details><summary>all columns</summary><div class='wide'>"
                     + r.frame.to_html(index=False, float_format="%.6g", na_rep="") + "</div></details>")
    if rep.provenance_lines():
        parts.append("<h2>Provenance</h2><ul>" + "".join(f"<li>{html.escape(line)}</li>"
                                                         for line in rep.provenance_lines()) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
