"""Pictures of a check: per-entry relative error heatmaps (matplotlib, optional).

:meth:`gradprobe.CheckReport.plot` calls :func:`plot_report`. For every
parameter of rank >= 2 checked entry by entry (full mode), it draws the
relative error ``|a - n| / max(|a|, |n|)`` of every entry on a logarithmic
colour scale, crosses the failing entries, circles the kinks, and marks the
parameter's ``rtol`` on the colour bar. A wrong row, column or block shows
at a glance. Arrays of rank > 2 are drawn as ``(shape[0], prod(shape[1:]))``.

matplotlib is an optional dependency (``pip install gradprobe[plot]``). The
figures are built without pyplot (no global state, no GUI backend needed).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config

if TYPE_CHECKING:
    from .reports import CheckReport, ParamReport


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("CheckReport.plot needs matplotlib: pip install matplotlib "
                          "(or gradprobe[plot])") from err
    return Figure


def plottable(param: "ParamReport") -> bool:
    """True for a parameter of rank >= 2 whose every entry was checked.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> r = gp.check(lambda W: np.sum(W ** 2), np.ones((2, 3)), 2 * np.ones((2, 3)))
    >>> plottable(r.params["W"])
    True
    """
    return bool(param.full) and len(param.shape) >= 2


def relative_error_map(param: "ParamReport") -> np.ndarray:
    """``log10`` of the per-entry relative error, as a 2-d array (rank > 2: rows x rest).

    Exact agreement is drawn at ``config.PLOT_MIN_REL_ERROR``.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> W = np.ones((2, 2)); g = 2 * W; g[0, 1] *= 2
    >>> m = relative_error_map(gp.check(lambda W: np.sum(W ** 2), W, g).params["W"])
    >>> m.shape, round(float(m[0, 1]), 3)
    ((2, 2), -0.301)
    """
    rel = np.asarray(param.rel_error_flat, dtype=np.float64)
    rel = np.where(np.isfinite(rel), rel, 1.0)
    rel = np.maximum(rel, config.PLOT_MIN_REL_ERROR)
    return np.log10(rel).reshape(param.shape[0], -1)


def draw_param(param: "ParamReport") -> Any:
    """One figure: the relative-error heatmap of ``param``, failures crossed.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> W = np.ones((3, 4)); g = 2 * W; g[:, 1] *= 1.1
    >>> fig = draw_param(gp.check(lambda W: np.sum(W ** 2), W, g).params["W"])
    >>> fig.axes[0].get_title().splitlines()[0]
    'W (3, 4) float64: 3 of 12 entries failed'
    """
    Figure = _figure_class()
    grid = relative_error_map(param)
    rows, cols = grid.shape
    longest = max(rows, cols)
    width = float(np.clip(2.5 + 8.0 * cols / longest, 5.0, 12.0))
    height = float(np.clip(1.5 + 6.0 * rows / longest, 3.5, 7.5))
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot()
    low = min(float(np.floor(grid.min())), -16.0)
    image = ax.imshow(grid, cmap="viridis", vmin=low, vmax=max(0.0, float(grid.max())),
                      aspect="auto", interpolation="nearest")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("log10 relative error")
    if param.rtol > 0:
        bar.ax.axhline(np.log10(param.rtol), color="red", linewidth=1.5)
        bar.ax.text(1.05, np.log10(param.rtol), " rtol", color="red", va="center",
                    transform=bar.ax.get_yaxis_transform(), fontsize=8)
    for mask, marker, colour, label in ((param.failed_mask, "x", "red", "failed"),
                                        (param.kink_mask, "o", "orange", "kink")):
        mask = np.asarray(mask).reshape(rows, cols)
        if mask.any():
            r, c = np.nonzero(mask)
            size = max(4.0, min(60.0, 4000.0 / max(rows, cols) ** 1.2))
            if marker == "o":
                ax.scatter(c, r, marker=marker, s=size, facecolors="none",
                           edgecolors=colour, linewidths=1.0, label=label)
            else:
                ax.scatter(c, r, marker=marker, s=size, c=colour, linewidths=1.0,
                           label=label)
    if param.failed or len(param.kinks):
        ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    shape = "x".join(str(n) for n in param.shape)
    title = (f"{param.name} {tuple(param.shape)} {param.dtype}: {param.failed} of "
             f"{param.checked} entries failed")
    detail = f"max rel err {param.max_rel_error:.3g}"
    if param.diagnosis:
        detail += f"; {param.diagnosis.split(':')[0]}"
    where = failing_lines(np.asarray(param.failed_mask).reshape(rows, cols),
                          columns="column" if len(param.shape) == 2 else "flat column")
    ax.set_title("\n".join([title, detail] + ([where] if where else [])), fontsize=10)
    from matplotlib.ticker import MaxNLocator

    for axis, count in ((ax.xaxis, cols), (ax.yaxis, rows)):
        if count <= 10:
            axis.set_ticks(range(count))
        else:
            axis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("row (axis 0)")
    ax.set_xlabel("column" if len(param.shape) == 2 else f"axes 1.. flattened ({shape})")
    fig.tight_layout()
    return fig


def _listed(values: np.ndarray, limit: int = config.PLOT_TITLE_INDICES) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({values.size} in all)" if values.size > limit else "")


def failing_lines(mask: np.ndarray, columns: str = "column") -> str:
    """Which rows and columns of a heatmap hold the failing entries, for its title.

    A whole failing row or column is named as such; otherwise the rows and
    columns that hold failures are listed ("" when nothing failed).

    Examples
    --------
    >>> mask = np.zeros((3, 4), dtype=bool); mask[:, 2] = True
    >>> failing_lines(mask)
    'failing: column 2 (every row)'
    >>> mask[:] = False; mask[1, 0] = mask[2, 3] = True
    >>> failing_lines(mask)
    'failing: rows 1, 2; columns 0, 3'
    """
    if not mask.any():
        return ""
    full_cols = np.flatnonzero(mask.all(axis=0))
    full_rows = np.flatnonzero(mask.all(axis=1))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    plural = "s" if cols.size > 1 else ""
    if full_cols.size and full_cols.size == cols.size:
        return f"failing: {columns}{plural} {_listed(full_cols)} (every row)"
    if full_rows.size and full_rows.size == rows.size:
        return f"failing: row{'s' if rows.size > 1 else ''} {_listed(full_rows)} (every column)"
    return (f"failing: row{'s' if rows.size > 1 else ''} {_listed(rows)}; "
            f"{columns}{plural} {_listed(cols)}")


def plot_report(report: "CheckReport", path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Heatmaps of every plottable parameter of ``report``.

    Parameters
    ----------
    report : CheckReport
    path : str or path-like, optional
        A directory (created if missing): each figure is written there as
        ``<parameter>.png``. Or a file name with a suffix matplotlib can
        write (``report.png``, ``.pdf``, ``.svg``, ...): one figure per file,
        ``report.png`` for one parameter, ``report_W1.png``,
        ``report_W2.png`` (the parameter's name before the suffix) for several.

    Returns
    -------
    dict
        Parameter name -> matplotlib ``Figure`` (``path=None``), or -> the
        written file's :class:`pathlib.Path`. Empty when no parameter has
        rank >= 2 with every entry checked.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp, tempfile, os
    >>> W, b = np.ones((4, 5)), np.ones(5)
    >>> r = gp.check(lambda W, b: np.sum(W ** 2) + np.sum(b), (W, b), (2 * W, np.ones(5)))
    >>> sorted(plot_report(r))
    ['W']
    >>> with tempfile.TemporaryDirectory() as d:
    ...     [p.name for p in plot_report(r, d).values()]
    ['W.png']
    >>> with tempfile.TemporaryDirectory() as d:
    ...     [p.name for p in plot_report(r, os.path.join(d, "check.pdf")).values()]
    ['check.pdf']
    """
    names = [name for name, p in report.params.items() if plottable(p)]
    figures = {name: draw_param(report.params[name]) for name in names}
    if path is None:
        return figures
    written = {}
    for name, target in _targets(Path(path), list(figures)).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        figures[name].savefig(target)
        written[name] = target
    return written


def _targets(path: Path, names: list[str]) -> dict[str, Path]:
    """Where each figure goes: ``path/<name>.png`` for a folder; for a file name,
    the file itself (one figure) or ``<stem>_<name><suffix>`` (several)."""
    if path.is_dir() or not path.suffix:
        return {name: path / f"{_file_name(name)}.png" for name in names}
    if len(names) == 1:
        return {names[0]: path}
    return {name: path.with_name(f"{path.stem}_{_file_name(name)}{path.suffix}")
            for name in names}


def _file_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "param"
