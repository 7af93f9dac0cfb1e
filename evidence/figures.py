"""Figures of the dossier, drawn as SVG from the records alone (never from tensors).

Each figure reads what a record carries (its metrics, their intervals and
baselines, its tables) and draws nothing the record does not hold. The figures
use one colour-blind-safe palette (Okabe & Ito 2008), label their axes with
units, and are deterministic: the same record gives the same SVG bytes on every
machine. Text is laid out with the font shipped with the package
(``evidence/fonts/DejaVuSans.ttf``) and written as text in that one family
(``DejaVu Sans``), never as another machine's font: the PDF draws it with the
shipped fonts only (and the CJK fallback for characters DejaVu lacks), the
browsable view with the same fonts, which it ships. Text rather than glyph
outlines keeps the figures' labels searchable and readable by assistive
technology, and the PDF small and quick to write.

matplotlib (the ``[render]`` extra) is imported only when a figure is drawn.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from evidence.errors import missing_extra
from evidence.records import EvidenceRecord, Metric, Table, ValidationCitation
from evidence.records.trend import MetricSeries, VerdictSeries

__all__ = ["PALETTE", "VERDICT_COLOURS", "Figure", "figures_for", "trend_figure", "validation_figure"]

#: Okabe & Ito's colour-blind-safe palette, in the order the figures use it.
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#999999",
}

#: A fixed salt for the ids matplotlib writes into an SVG (clip paths, markers): same input, same bytes.
_SVG_SALT = "interp-dossier"
#: The one font family the figures' text is written in: the shipped ``DejaVuSans.ttf``.
FONT_FAMILY = "DejaVu Sans"
_WIDTH_IN, _HEIGHT_IN = 6.3, 2.6


@dataclass(frozen=True)
class Figure:
    """One figure of a record: an SVG document (no XML prolog, ready to inline) and its caption."""

    name: str
    caption: str
    svg: str


def figures_for(record: EvidenceRecord) -> list[Figure]:
    """The figures drawn from ``record``; none when its measurement has no figure or the record lacks the data."""
    if record.status != "ok":
        return []
    drawers = _DRAWERS.get(record.measurement.id, ())
    return [figure for draw in drawers if (figure := draw(record)) is not None]


# -- drawing helpers --------------------------------------------------------------------------


def _matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.backends.backend_svg import FigureCanvasSVG
        from matplotlib.figure import Figure as MplFigure
        from matplotlib.font_manager import FontProperties
    except ImportError as exc:
        raise missing_extra("render", exc) from None
    return matplotlib, MplFigure, FigureCanvasSVG, FontProperties


def _style() -> dict[str, Any]:
    return {
        "svg.hashsalt": _SVG_SALT,
        "svg.fonttype": "none",  # text as text, in FONT_FAMILY
        "font.family": [FONT_FAMILY],
        "text.usetex": False,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.linewidth": 0.6,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "font.size": 8.0,
        "legend.frameon": False,
        "path.simplify": False,
    }


def _new_figure() -> tuple[Any, Any]:
    # Fixed margins, no layout engine: where things go does not depend on how wide any font draws text.
    _, mpl_figure, canvas_svg, _ = _matplotlib()
    figure = mpl_figure(figsize=(_WIDTH_IN, _HEIGHT_IN))
    canvas_svg(figure)
    figure.subplots_adjust(left=0.1, right=0.98, bottom=0.17, top=0.95)
    return figure, figure.add_subplot()


def _to_svg(figure: Any) -> str:
    """The figure as SVG text, every text laid out in the shipped font, without prolog or varying metadata."""
    from evidence.resources import shipped_fonts

    _, _, _, font_properties = _matplotlib()
    from matplotlib.text import Text

    font = shipped_fonts() / "DejaVuSans.ttf"
    figure.draw_without_rendering()  # creates every tick label, so that each gets the shipped font
    for text in figure.findobj(Text):
        text.set_fontproperties(font_properties(fname=font, size=text.get_fontsize()))
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None, "Creator": "interp-dossier"})
    svg = out.getvalue()
    return svg[svg.index("<svg") :]


def _draw(drawing: Callable[[Any, Any], None]) -> str:
    matplotlib, _, _, _ = _matplotlib()
    with matplotlib.rc_context(_style()):
        figure, axes = _new_figure()
        drawing(figure, axes)
        return _to_svg(figure)


def _metric(record: EvidenceRecord, name: str) -> Metric | None:
    return next((m for m in record.metrics if m.name == name), None)


def _table(record: EvidenceRecord, name: str) -> Table | None:
    return next((t for t in record.tables if t.name == name), None)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numeric_rows(table: Table, columns: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, float]]:
    """The rows of ``table`` whose ``columns`` are all finite numbers, as floats by column name.

    Sorted by the first of ``columns``; each of ``optional`` is kept when finite (absent otherwise).
    """
    index = {c: table.columns.index(c) for c in table.columns}
    rows = []
    for row in table.rows:
        if all(_finite(row[index[c]]) for c in columns):
            values = {c: float(row[index[c]]) for c in columns}  # type: ignore[arg-type]
            values.update({c: float(row[index[c]]) for c in optional  # type: ignore[arg-type]
                           if c in index and _finite(row[index[c]])})  # fmt: skip
            rows.append(values)
    return sorted(rows, key=lambda r: r[columns[0]])


# -- deception.probe: per-layer AUROC --------------------------------------------------------


def _probe_auroc_by_layer(record: EvidenceRecord) -> Figure | None:
    table = _table(record, "per_layer_curve")
    needed = ("layer", "probe", "auroc", "auroc_ci_lower", "auroc_ci_upper", "selected")
    if table is None or any(c not in table.columns for c in needed):
        return None
    col = {c: table.columns.index(c) for c in table.columns}
    curves: dict[str, list[Sequence[Any]]] = {}
    for row in table.rows:
        if all(_finite(row[col[c]]) for c in ("layer", "auroc", "auroc_ci_lower", "auroc_ci_upper")):
            curves.setdefault(str(row[col["probe"]]), []).append(row)
    if not curves:
        return None
    auroc = _metric(record, "auroc")
    random = auroc.baseline if auroc is not None else None
    selected = [row for rows in curves.values() for row in rows if row[col["selected"]] == 1]
    colours = [PALETTE["blue"], PALETTE["orange"], PALETTE["green"], PALETTE["purple"]]

    def drawing(figure: Any, axes: Any) -> None:
        for (kind, rows), colour in zip(sorted(curves.items()), colours * 4, strict=False):
            rows = sorted(rows, key=lambda r: r[col["layer"]])
            layers = [r[col["layer"]] for r in rows]
            axes.fill_between(layers, [r[col["auroc_ci_lower"]] for r in rows],
                              [r[col["auroc_ci_upper"]] for r in rows], color=colour, alpha=0.2, linewidth=0)
            axes.plot(layers, [r[col["auroc"]] for r in rows], color=colour, marker="o", markersize=3,
                      linewidth=1.2, label=f"{kind} probe (95% CI band)" if rows else kind)
        if selected:
            row = selected[0]
            axes.plot([row[col["layer"]]], [row[col["auroc"]]], linestyle="none", marker="s", markersize=7,
                      markerfacecolor="none", markeredgecolor=PALETTE["black"], label="selected read point")
            if random is not None and random.ci is not None:
                axes.errorbar([row[col["layer"]]], [random.value],
                              yerr=[[random.value - random.ci.lower], [random.ci.upper - random.value]],
                              color=PALETTE["vermillion"], marker="D", markersize=4, capsize=3, linestyle="none",
                              label="random directions (selected point, CI)")
        axes.axhline(0.5, color=PALETTE["grey"], linewidth=0.8, linestyle="--", label="chance (0.5)")
        axes.set_xticks(sorted({r[col["layer"]] for rows in curves.values() for r in rows}))
        axes.set_ylim(0.0, 1.02)
        axes.set_xlabel("layer (read point; -1 is the input of block 0)")
        axes.set_ylabel("AUROC on the evaluation set (unitless)")
        axes.legend(loc="lower right", fontsize=6.5)

    caption = (
        "Probe AUROC at every candidate layer, triggered vs untriggered evaluation prompts, with each "
        "AUROC's confidence interval as a band; the square marks the read point the selection rule chose"
        + ("; the diamond is the random-direction baseline at that point, with its interval." if random else ".")
    )
    return Figure(name="per-layer probe AUROC", caption=caption, svg=_draw(drawing))


# -- refusal.direction: refusal rates under interventions -------------------------------------


def _refusal_rates(record: EvidenceRecord) -> Figure | None:
    bars: list[tuple[str, str, float, Any, str]] = []  # (group, label, value, ci, colour)

    def add(group: str, label: str, metric: Metric | None, colour: str, baseline: bool = False) -> None:
        if metric is None or metric.unit != "fraction":  # the axis reads fractions as percentages
            return
        source: Any = metric.baseline if baseline else metric
        if source is not None and _finite(source.value):
            bars.append((group, label, float(source.value), source.ci, colour))

    ablated, induced = _metric(record, "refusal_rate_ablated"), _metric(record, "refusal_rate_induced")
    add("harmful prompts", "no intervention", _metric(record, "refusal_rate_baseline"), PALETTE["grey"])
    add("harmful prompts", "direction ablated", ablated, PALETTE["blue"])
    add("harmful prompts", "random direction ablated", ablated, PALETTE["orange"], baseline=True)
    add("harmless prompts", "no intervention", _metric(record, "refusal_rate_harmless"), PALETTE["grey"])
    add("harmless prompts", "direction added", induced, PALETTE["green"])
    add("harmless prompts", "random vector added", induced, PALETTE["orange"], baseline=True)
    if len(bars) < 2:
        return None

    def drawing(figure: Any, axes: Any) -> None:
        positions, ticks, groups = [], [], []
        x = 0.0
        for i, (group, label, _, _, _) in enumerate(bars):
            if i and group != bars[i - 1][0]:
                x += 0.6
            positions.append(x)
            ticks.append(label)
            groups.append(group)
            x += 1.0
        values = [100.0 * b[2] for b in bars]
        lower = [100.0 * (b[2] - b[3].lower) if b[3] is not None else 0.0 for b in bars]
        upper = [100.0 * (b[3].upper - b[2]) if b[3] is not None else 0.0 for b in bars]
        axes.bar(positions, values, width=0.75, color=[b[4] for b in bars], yerr=[lower, upper], capsize=3,
                 error_kw={"elinewidth": 0.8, "ecolor": PALETTE["black"]})
        figure.subplots_adjust(bottom=0.24)
        labels = [f"{textwrap.fill(t, 16)}\n({g.split()[0]})" for t, g in zip(ticks, groups, strict=True)]
        axes.set_xticks(positions, labels, fontsize=6.5)
        axes.set_ylim(0.0, 105.0)
        axes.set_ylabel("refusal rate (% of prompts)")

    caption = (
        "Refusal rates read from the model's own greedy output, with their intervals: harmful prompts without "
        "intervention (every part of the set), with the refusal direction ablated and with a random direction "
        "ablated (the evaluation part); harmless prompts of the evaluation part without intervention, with the "
        "direction added and with a random vector of the same norm added."
    )
    return Figure(name="refusal rates", caption=caption, svg=_draw(drawing))


# -- heads.inventory: head scores, layer x head -----------------------------------------------

#: The sequential colour map of heat maps: cividis, designed to read the same with colour-vision deficiencies.
HEATMAP = "cividis"
_MAX_ANNOTATED_CELLS = 96


def _head_scores(record: EvidenceRecord) -> Figure | None:
    table = _table(record, "head_scores")
    if table is None or table.columns[:2] != ["layer", "head"] or len(table.columns) < 3 or not table.rows:
        return None
    if not all(isinstance(row[0], int) and isinstance(row[1], int) and row[0] >= 0 and row[1] >= 0
               for row in table.rows):
        return None
    scores = table.columns[2:]
    n_layers = 1 + max(int(row[0]) for row in table.rows)  # type: ignore[arg-type]
    n_heads = 1 + max(int(row[1]) for row in table.rows)  # type: ignore[arg-type]
    grids = {name: [[math.nan] * n_heads for _ in range(n_layers)] for name in scores}
    for row in table.rows:
        for name, value in zip(scores, row[2:], strict=True):
            if _finite(value):
                grids[name][int(row[0])][int(row[1])] = float(value)  # type: ignore[arg-type]

    def drawing(figure: Any, axes: Any) -> None:
        figure.delaxes(axes)
        figure.subplots_adjust(left=0.07, right=0.9, bottom=0.17, top=0.9, wspace=0.25)
        panels = figure.subplots(1, len(scores), squeeze=False)[0]
        mesh = None
        for panel, name in zip(panels, scores, strict=True):
            # Vector cells (pcolormesh), never a raster image.
            mesh = panel.pcolormesh(grids[name], cmap=HEATMAP, vmin=0.0, vmax=1.0, edgecolors="none")
            panel.set_title(name.replace("_", " "), fontsize=8)
            panel.set_xlabel("head (index)")
            panel.set_xticks([h + 0.5 for h in range(n_heads)], [str(h) for h in range(n_heads)])
            panel.set_yticks([layer + 0.5 for layer in range(n_layers)], [str(layer) for layer in range(n_layers)])
            if n_layers * n_heads <= _MAX_ANNOTATED_CELLS:
                for layer in range(n_layers):
                    for head in range(n_heads):
                        value = grids[name][layer][head]
                        if math.isfinite(value):
                            panel.text(head + 0.5, layer + 0.5, f"{value:.2f}", ha="center", va="center",
                                       fontsize=5.5, color="white" if value < 0.55 else "black")
        panels[0].set_ylabel("layer (index)")
        if mesh is not None:
            bar = figure.colorbar(mesh, ax=list(panels), label="mean score (0 to 1)", shrink=0.9)
            bar.solids.set_rasterized(False)  # matplotlib rasterizes long colour bars; keep it vector

    caption = (
        f"Mean score of every head ({n_layers} layers \u00d7 {n_heads} heads) over the evaluation sequences, "
        f"one panel per score ({', '.join(s.replace('_', ' ') for s in scores)}), from the record's "
        "head_scores table."
    )
    return Figure(name="head scores", caption=caption, svg=_draw(drawing))


# -- deception.robustness: the attack-budget curve --------------------------------------------


def _attack_budget(record: EvidenceRecord) -> Figure | None:
    table = _table(record, "attack_budget_curve")
    series = (("recall_at_1pct_fpr", "probe recall at 1% FPR", PALETTE["blue"], "o"),
              ("defection_rate", "defection rate (model output)", PALETTE["vermillion"], "s"))  # fmt: skip
    if table is None or "step" not in table.columns:
        return None
    col = {c: table.columns.index(c) for c in table.columns}
    drawn = [s for s in series if s[0] in col]
    points = {
        name: sorted((row[col["step"]], row[col[name]]) for row in table.rows
                     if _finite(row[col["step"]]) and _finite(row[col[name]]))
        for name, *_ in drawn
    }  # fmt: skip
    if not any(points.values()):
        return None

    def drawing(figure: Any, axes: Any) -> None:
        for name, label, colour, marker in drawn:
            if points[name]:
                steps, values = zip(*points[name], strict=True)
                axes.plot(steps, [100.0 * v for v in values], color=colour, marker=marker, markersize=3,
                          linewidth=1.2, label=label)
        axes.set_ylim(0.0, 105.0)
        axes.set_xlabel("attack budget (optimisation steps against the probe)")
        axes.set_ylabel("% of triggered prompts")
        axes.legend(loc="best", fontsize=6.5)

    caption = (
        "The obfuscation attack's budget curve on the held-out triggered evaluation prompts: the probe's recall "
        "at its 1% false-positive operating point and the model's defection rate, after each number of attack "
        "steps (point values from the record's attack_budget_curve table, which carries no intervals)."
    )
    return Figure(name="attack budget", caption=caption, svg=_draw(drawing))


# -- circuit.faithfulness: the faithfulness curve f(k) against random circuits -----------------


def _faithfulness_curve(prefix: str, task: str) -> Callable[[EvidenceRecord], Figure | None]:
    """The drawer of the ``<prefix>faithfulness_curve`` table (the induction task's, or the refusal task's)."""

    def draw(record: EvidenceRecord) -> Figure | None:
        table = _table(record, prefix + "faithfulness_curve")
        needed = ("k", "faithfulness", "ci_lower", "ci_upper", "faithfulness_random")
        if table is None or any(c not in table.columns for c in needed):
            return None
        extra = ("random_ci_lower", "random_ci_upper", "faithfulness_patching_ranked")
        rows = _numeric_rows(table, needed, extra)
        if len(rows) < 2:
            return None
        band = all("random_ci_lower" in r and "random_ci_upper" in r for r in rows)
        size = _metric(record, prefix + "circuit_size_k")
        target = record.measurement.params.get("target_faithfulness")

        def drawing(figure: Any, axes: Any) -> None:
            ks = [r["k"] for r in rows]
            if band:
                axes.fill_between(ks, [r["random_ci_lower"] for r in rows], [r["random_ci_upper"] for r in rows],
                                  color=PALETTE["orange"], alpha=0.25, linewidth=0, step="post",
                                  label="random circuits: 95% CI of the mean")
            axes.step(ks, [r["faithfulness_random"] for r in rows], where="post", color=PALETTE["orange"],
                      linewidth=1.0, label="random circuits (mean)")
            axes.fill_between(ks, [r["ci_lower"] for r in rows], [r["ci_upper"] for r in rows],
                              color=PALETTE["blue"], alpha=0.2, linewidth=0, step="post")
            axes.step(ks, [r["faithfulness"] for r in rows], where="post", color=PALETTE["blue"],
                      linewidth=1.4, label="circuit by attribution score (95% CI band)")
            ranked = [(r["k"], r["faithfulness_patching_ranked"]) for r in rows if "faithfulness_patching_ranked" in r]
            if ranked:
                axes.step(*zip(*ranked, strict=True), where="post", color=PALETTE["green"], linewidth=1.0,
                          linestyle="--", label="circuit by patching effect")
            if isinstance(target, int | float) and _finite(target):
                axes.axhline(float(target), color=PALETTE["grey"], linewidth=0.8, linestyle=":",
                             label=f"target faithfulness ({float(target):g})")
            if size is not None and _finite(size.value):
                axes.axvline(float(size.value), color=PALETTE["black"], linewidth=0.8, linestyle="-.",
                             label=f"chosen k = {size.value:g}")
            axes.set_xlabel("k (components kept in the circuit; all others patched)")
            axes.set_ylabel("faithfulness (fraction of M's effect)")
            axes.legend(loc="lower right", fontsize=6.5)

        caption = (
            f"Faithfulness f(k) of the {task} circuit on the held-out examples, (m(C) \u2212 m(\u2205)) / "
            "(m(M) \u2212 m(\u2205)), as the k top components by attribution score are kept and every other is "
            "patched, with its confidence interval; the same for the components ranked by their measured patching "
            "effect, and the mean of random rankings"
            + (" with the confidence interval of that mean." if band else " (the record carries no interval of the "
               "random rankings' mean at every k).")
        )
        return Figure(name=f"{task} faithfulness curve", caption=caption, svg=_draw(drawing))

    return draw


# -- refusal.stability: the suffix attack's budget curve ---------------------------------------


def _suffix_attack_budget(record: EvidenceRecord) -> Figure | None:
    table = _table(record, "attack_budget_curve")
    needed = ("evaluations_per_prompt", "compliance_rate", "ci_lower", "ci_upper")
    if table is None or any(c not in table.columns for c in needed):
        return None
    rows = _numeric_rows(table, needed, ("restart", "step"))
    if len(rows) < 2:
        return None
    metric = _metric(record, "attack_compliance_rate")
    random = metric.baseline if metric is not None else None
    # Where a later restart of the search begins (its step 0), on the budget axis.
    restarts = sorted({r["evaluations_per_prompt"] for r in rows if r.get("step") == 0 and r.get("restart", 0) > 0})

    def drawing(figure: Any, axes: Any) -> None:
        x = [r["evaluations_per_prompt"] for r in rows]
        axes.fill_between(x, [100.0 * r["ci_lower"] for r in rows], [100.0 * r["ci_upper"] for r in rows],
                          color=PALETTE["vermillion"], alpha=0.2, linewidth=0, step="post")
        axes.step(x, [100.0 * r["compliance_rate"] for r in rows], where="post", color=PALETTE["vermillion"],
                  linewidth=1.4, marker="o", markersize=2.5, label="attack success (Wilson 95% CI band)")
        if random is not None and _finite(random.value):
            axes.axhline(100.0 * random.value, color=PALETTE["blue"], linewidth=1.0, linestyle="--",
                         label=f"baseline: {random.name}")
            if random.ci is not None:
                axes.axhspan(100.0 * random.ci.lower, 100.0 * random.ci.upper, color=PALETTE["blue"], alpha=0.12,
                             linewidth=0)
        for i, at in enumerate(restarts):
            axes.axvline(at, color=PALETTE["grey"], linewidth=0.7, linestyle=":",
                         label="restart of the search" if i == 0 else None)
        axes.set_ylim(0.0, 105.0)
        axes.set_xlabel("attack budget (forward evaluations per prompt)")
        axes.set_ylabel("attacked prompts complied (%)")
        axes.legend(loc="upper left", fontsize=6.5)

    caption = (
        "The suffix attack's budget curve: the share of attacked harmful prompts on which some suffix found so far "
        "made the model comply, against the forward evaluations spent per prompt, with Wilson intervals"
        + ("; the dashed line and band are the random-suffix baseline." if random is not None else ".")
    )
    return Figure(name="suffix attack budget", caption=caption, svg=_draw(drawing))


# -- calibration.organisms: PRI against the planted goal-proxy correlation ---------------------

#: The calibration record's table of the proxy organisms (``calibration_organisms.PROXY_TABLE``).
_PROXY_TABLE = "proxy_reliance_by_correlation"


def _pri_vs_rho(record: EvidenceRecord) -> Figure | None:
    table = _table(record, _PROXY_TABLE)
    needed = ("rho", "pri", "pri_ci_lower", "pri_ci_upper")
    if table is None or "organism" not in table.columns or any(c not in table.columns for c in needed):
        return None
    col = {c: table.columns.index(c) for c in table.columns}
    points = sorted(
        (float(row[col["rho"]]), float(row[col["pri"]]), float(row[col["pri_ci_lower"]]),  # type: ignore[arg-type]
         float(row[col["pri_ci_upper"]]), str(row[col["organism"]]))  # type: ignore[arg-type]
        for row in table.rows if all(_finite(row[col[c]]) for c in needed)
    )  # fmt: skip
    if not points:
        return None
    missing = [str(row[col["organism"]]) for row in table.rows if not all(_finite(row[col[c]]) for c in needed)]
    # The PRI thresholds the record's own calibration checks apply (none drawn if it has none).
    thresholds = sorted({float(c.threshold) for check in record.checks if check.metric == "pri"
                         and check.measurement == "goal.proxy_reliance" for c in check.criteria})  # fmt: skip

    def drawing(figure: Any, axes: Any) -> None:
        rho = [p[0] for p in points]
        pri = [p[1] for p in points]
        axes.errorbar(rho, pri, yerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]],
                      color=PALETTE["blue"], marker="o", markersize=4, capsize=3, linestyle=":", linewidth=0.8,
                      elinewidth=1.0, label="PRI (95% CI)")
        for r, value, _, _, name in points:
            axes.annotate(name, (r, value), xytext=(4, -10 if value > 0.85 else 5), textcoords="offset points",
                          fontsize=6.5)
        for i, threshold in enumerate(thresholds):
            axes.axhline(threshold, color=PALETTE["grey"], linewidth=0.8, linestyle="--",
                         label="threshold of the calibration checks" if i == 0 else None)
        axes.set_xlim(-0.05, 1.1)
        axes.set_ylim(-0.02, 1.05)
        axes.set_xlabel("\u03c1: goal\u2013proxy correlation in training (phi, unitless)")
        axes.set_ylabel("PRI (fraction; 0 goal, 1 proxy)")
        axes.legend(loc="upper left", fontsize=6.5)

    caption = (
        "Proxy Reliance Index (experimental) of each proxy organism, with its confidence interval, against the "
        "correlation \u03c1 between goal and proxy that its training recipe planted (\u03c1 = 1 \u2212 2 \u00d7 the "
        "share of training comparisons whose proxy disagrees with the goal), from the record's "
        f"{_PROXY_TABLE} table"
        + (f"; not measured: {', '.join(missing)}." if missing else ".")
    )
    return Figure(name="PRI vs rho", caption=caption, svg=_draw(drawing))


# -- the validation report: detection and false-alarm rates per instrument ---------------------


def validation_figure(citation: ValidationCitation) -> Figure | None:
    """Each validated detector's detection and false-alarm rates with their intervals, against the targets."""
    from evidence.validation_report import TARGET_DETECTION, TARGET_FALSE_ALARMS

    detectors = [d for d in citation.detectors if d.detection.n or d.false_alarms.n]
    if not detectors:
        return None
    labels = [f"{d.measurement}\n{d.metric}" for d in detectors]

    def drawing(figure: Any, axes: Any) -> None:
        figure.delaxes(axes)
        height = max(_HEIGHT_IN, 0.42 * len(detectors) + 0.9)
        figure.set_size_inches(_WIDTH_IN, height)
        figure.subplots_adjust(left=0.34, right=0.98, bottom=0.6 / height, top=1 - 0.3 / height, wspace=0.12)
        panels = figure.subplots(1, 2, sharey=True)
        y = list(range(len(detectors)))[::-1]
        for panel, attr, colour, target, title in (
            (panels[0], "detection", PALETTE["blue"], TARGET_DETECTION, "detected (target \u2265"),
            (panels[1], "false_alarms", PALETTE["vermillion"], TARGET_FALSE_ALARMS, "false alarms (target \u2264"),
        ):
            for row, detector in zip(y, detectors, strict=True):
                rate = getattr(detector, attr)
                if not rate.n or rate.rate is None or rate.ci is None:
                    continue
                panel.errorbar([100.0 * rate.rate], [row], xerr=[[100.0 * (rate.rate - rate.ci.lower)],
                               [100.0 * (rate.ci.upper - rate.rate)]], color=colour, marker="o", markersize=4,
                               capsize=2.5, linestyle="none", elinewidth=1.0)
                panel.text(106.0, row, f"{rate.k}/{rate.n}", va="center", fontsize=6.5)
            panel.axvline(100.0 * target, color=PALETTE["grey"], linewidth=0.8, linestyle="--")
            panel.set_xlim(0.0, 122.0)
            panel.set_xticks([0, 25, 50, 75, 100])
            panel.set_title(f"{title} {target:.0%})", fontsize=7.5)
            panel.set_xlabel("rate (% of organisms, 95% CI)")
        panels[0].set_yticks(y, labels, fontsize=6.5)
        panels[0].set_ylim(-0.6, len(detectors) - 0.4)

    caption = (
        f"Detection and false-alarm rates of each validated instrument over the {citation.population} population "
        f"({citation.organisms} organisms), with exact (Clopper\u2013Pearson) intervals and the counts; dashed "
        "lines mark the targets. From the validation report the dossier cites."
    )
    return Figure(name="validation rates", caption=caption, svg=_draw(drawing))


# -- a sweep's trend: one metric across the checkpoints ----------------------------------------

#: The colour (from the palette) and marker of each verdict: the marker tells them apart without colour.
VERDICT_COLOURS = {
    "pass": (PALETTE["green"], "o"),
    "fail": (PALETTE["vermillion"], "s"),
    "inconclusive": (PALETTE["orange"], "D"),
    "n/a": (PALETTE["grey"], "^"),
}
_SIGNS = {">=": "\u2265", ">": ">", "<=": "\u2264", "<": "<"}
_GAP_WORDS = {"error": "measurement\nfailed", "absent": "not\nmeasured"}


def trend_figure(series: MetricSeries, verdicts: Sequence[VerdictSeries]) -> Figure | None:
    """One metric of a sweep's trend on each checkpoint, in sweep order; None when no checkpoint has a value.

    Drawn from the trend alone: each checkpoint's value with its interval, the marker coloured by the
    verdict of the first threshold that gates the metric (as recorded for that checkpoint), each gating
    threshold as a dashed line, and the checkpoints without a value (the measurement failed, or the
    record has no such metric) marked as gaps.
    """
    points = series.points
    if not any(p.value is not None and _finite(p.value) for p in points):
        return None
    # The policy's thresholds on this metric, in the order the series names them.
    by_id = {v.verdict_id: v for v in verdicts if (v.measurement, v.metric) == (series.measurement, series.metric)}
    gating = [by_id[i] for i in series.gated_by if i in by_id] or list(by_id.values())
    judged = gating[0] if gating else None
    decisions: list[str | None] = [p.verdict for p in judged.points] if judged is not None else [None] * len(points)
    labels = [p.checkpoint for p in points]
    rotate = len(labels) > 6 or max(len(label) for label in labels) > 8
    levels = sorted({p.ci.level for p in points if p.ci is not None})
    level = f"{levels[0] * 100:.4g}% CI" if len(levels) == 1 else "CI"

    def drawing(figure: Any, axes: Any) -> None:
        xs = list(range(len(points)))
        values = [float(p.value) if p.value is not None and _finite(p.value) else math.nan for p in points]
        axes.plot(xs, values, color=PALETTE["grey"], linewidth=0.8, linestyle=":", zorder=1)
        groups: dict[str | None, list[int]] = {}
        for i, decision in enumerate(decisions):
            if math.isfinite(values[i]):
                groups.setdefault(decision, []).append(i)
        for decision, members in groups.items():
            colour, marker = VERDICT_COLOURS.get(decision or "", (PALETTE["blue"], "o"))
            ci = [points[i].ci for i in members]
            lower = [values[i] - c.lower if c is not None else 0.0 for i, c in zip(members, ci, strict=True)]
            upper = [c.upper - values[i] if c is not None else 0.0 for i, c in zip(members, ci, strict=True)]
            if judged is None:
                label = f"value ({level})" if levels else "value"
            else:
                label = f"{judged.verdict_id}: {decision if decision is not None else 'no verdict'}"
            axes.errorbar(
                members,
                [values[i] for i in members],
                yerr=[lower, upper],
                color=colour,
                marker=marker,
                markersize=4.5,
                capsize=3,
                linestyle="none",
                elinewidth=1.0,
                label=label,
                zorder=3,
            )
        for i, threshold in enumerate(gating):
            axes.axhline(float(threshold.threshold), color=PALETTE["black"] if i == 0 else PALETTE["grey"],
                         linewidth=0.8, linestyle="--" if i == 0 else "-.", zorder=2,
                         label=f"threshold {_SIGNS[threshold.comparator]} {threshold.threshold:g} "
                               f"({threshold.verdict_id})")  # fmt: skip
        for i, point in enumerate(points):
            if point.status != "ok":
                axes.axvspan(i - 0.4, i + 0.4, color=PALETTE["grey"], alpha=0.12, linewidth=0, zorder=0)
                axes.text(
                    i,
                    0.04,
                    _GAP_WORDS.get(point.status, point.status),
                    transform=axes.get_xaxis_transform(),
                    ha="center",
                    va="bottom",
                    fontsize=6.5,
                    color="#555555",
                )
        axes.set_xlim(-0.5, len(points) - 0.5)
        if rotate:
            figure.subplots_adjust(bottom=0.3)
            axes.set_xticks(xs, labels, rotation=30, ha="right", fontsize=6.5)
        else:
            axes.set_xticks(xs, labels)
        axes.set_xlabel("checkpoint (in sweep order)")
        axes.set_ylabel(f"{series.metric} ({series.unit})" if series.unit else series.metric)
        # Above the axes, where it hides no point and no threshold.
        figure.subplots_adjust(top=0.84)
        axes.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3, fontsize=6.5, borderaxespad=0.0)

    gaps = [f"{p.checkpoint} ({'measurement failed' if p.status == 'error' else 'not measured'})"
            for p in points if p.status != "ok"]  # fmt: skip
    caption = (
        f"{series.metric} of {series.measurement} on each checkpoint, in sweep order"
        + (f", with its {level}" if levels else "")
        + (
            f"; markers coloured by the verdict of {judged.verdict_id} on that checkpoint (pass green circle, "
            "fail vermillion square, inconclusive orange diamond); dashed: the "
            + ("threshold" if len(gating) == 1 else "thresholds")
            + " of the policy on this metric"
            if judged is not None
            else "; no threshold of the policy gates this metric"
        )
        + (f". No value: {', '.join(gaps)}." if gaps else ".")
        + " Read from the checkpoints' dossiers as the trend records them."
    )
    return Figure(name=f"{series.metric} across checkpoints", caption=caption, svg=_draw(drawing))


_DRAWERS: dict[str, tuple[Callable[[EvidenceRecord], Figure | None], ...]] = {
    "calibration.organisms": (_pri_vs_rho,),
    "circuit.faithfulness": (_faithfulness_curve("", "induction"), _faithfulness_curve("refusal_", "refusal")),
    "deception.probe": (_probe_auroc_by_layer,),
    "deception.robustness": (_attack_budget,),
    "heads.inventory": (_head_scores,),
    "refusal.direction": (_refusal_rates,),
    "refusal.stability": (_suffix_attack_budget,),
}
