"""Digits example: energy of the trained ILIF net vs its LIF twin, on the 450 test digits.

Writes examples/reports/digits_ilif_vs_lif.{html,md,json}, digits_energy_models.md (the same
spikes under other energy models) and digits_ilif.csv / digits_lif.csv
(counts and energy per inference, paper's energy model: E_AC 0.9 pJ, E_MAC 4.6 pJ), and prints
the comparison.  The same as::

    ilif-energy examples/models/digits_ilif.pt --compare examples/models/digits_lif.pt \
        --name ILIF --compare-name LIF --html ... --markdown ... --json ...
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import ilif_deploy as I
from ilif_deploy import energy
from ilif_deploy.atomic import write_text_atomic
from ilif_deploy.data import digits

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "reports", help="output folder (default examples/reports)")
    p.add_argument("--energy-model", default="paper", help="energy model preset or file (default paper)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    x, y = digits("test")
    reports = {}
    for kind in ("ilif", "lif"):
        model = I.load_model(HERE / "models" / f"digits_{kind}.pt")
        graph = I.trace(model, (1, 8, 8), 4)
        reports[kind] = energy.profile(graph, x, y, name=kind.upper(), energy_model=args.energy_model,
                                       data_name="digits (test split)")
        reports[kind].to_csv(args.out / f"digits_{kind}.csv")
    ilif, lif = reports["ilif"], reports["lif"]
    ilif.to_html(args.out / "digits_ilif_vs_lif.html", compare=lif)
    ilif.to_markdown(args.out / "digits_ilif_vs_lif.md", compare=lif)
    write_text_atomic(args.out / "digits_ilif_vs_lif.json",
                      json.dumps({"ilif": ilif.to_dict(), "lif": lif.to_dict()}, indent=1) + "\n")
    print(ilif.headline())
    print(lif.headline())
    print(energy.comparison_frame(ilif, lif).to_string(index=False))

    # The same spikes priced under other models and conventions: ILIF's extra compartments cost
    # neuron-update work that the paper's convention (synaptic ops only) leaves out.
    variants = [("paper (synaptic ops only)", "paper", {}),
                ("paper + neuron updates", "paper", {"neurons": "count"}),
                ("horowitz-int8", "horowitz-int8", {}),
                ("loihi (synaptic ops, compartment updates, spikes)", "loihi", {})]
    graphs = {k: I.trace(I.load_model(HERE / "models" / f"digits_{k}.pt"), (1, 8, 8), 4) for k in ("ilif", "lif")}
    lines = ["# Digits: ILIF vs LIF energy under other models and conventions", "",
             "450 test digits, T = 4, energy per inference (uJ); same recorded spikes as digits_ilif_vs_lif.md.", "",
             "| energy model / convention | ILIF [uJ] | LIF [uJ] | ILIF / LIF |", "|---|---|---|---|"]
    for label, em, conv in variants:
        e = {k: energy.profile(g, x, energy_model=em, conventions=conv, progress=False).totals["energy_uj"]
             for k, g in graphs.items()}
        lines.append(f"| {label} | {e['ilif']:.4f} | {e['lif']:.4f} | {e['ilif'] / e['lif']:.3f} |")
    table = "\n".join(lines) + "\n"
    write_text_atomic(args.out / "digits_energy_models.md", table)
    print(table)
    print(f"wrote {args.out}/digits_ilif_vs_lif.html, .md, .json, digits_energy_models.md and "
          "digits_ilif.csv, digits_lif.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
