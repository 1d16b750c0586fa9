"""CheckReport.plot: heatmaps of per-entry relative error (matplotlib, Agg, no pyplot)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.report import plotting

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def cube(W, v):
    return np.sum(W ** 3) + np.sum(v ** 2)


def test_heatmap_values_and_failed_marks(unchanged):
    W = np.linspace(0.5, 2.0, 12).reshape(3, 4)
    v = np.ones(5)
    gW = 3 * W ** 2
    gW[:, 2] *= 1.1
    with unchanged((W, v, gW)):
        report = gp.check(cube, (W, v), (gW, 2 * v))
        figures = report.plot()
    assert list(figures) == ["W"]  # the 1-d parameter is not drawn
    ax = figures["W"].axes[0]
    image = ax.get_images()[0].get_array()
    expected = np.log10(np.maximum(report.params["W"].rel_error_flat.reshape(3, 4), 1e-16))
    np.testing.assert_allclose(np.asarray(image), expected)
    assert image[0, 2] > -1.5 and image[0, 0] < -5
    crosses = ax.collections[0].get_offsets()
    assert sorted(map(tuple, np.asarray(crosses).astype(int))) == [(2, 0), (2, 1), (2, 2)]
    assert "3 of 12 entries failed" in ax.get_title()


def test_writes_png_files(tmp_path):
    T = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    report = gp.check(lambda T: np.sum(np.sin(T)), T, np.cos(T))
    written = report.plot(tmp_path / "out")
    assert list(written) == ["T"]
    path = written["T"]
    assert path == tmp_path / "out" / "T.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 200 and image.shape[1] > 300
    assert plotting.relative_error_map(report.params["T"]).shape == (2, 12)


def test_nothing_to_draw_in_sample_mode_or_for_vectors():
    W = np.ones((30, 30))
    assert gp.check(lambda W: np.sum(W ** 2), W, 2 * W, mode="sample", samples=5).plot() == {}
    assert gp.check(lambda w: np.sum(w ** 2), np.ones(4), 2 * np.ones(4)).plot() == {}


def test_kinks_are_circled():
    W = np.array([[0.0, 1.0], [2.0, -1.0]])
    report = gp.check(lambda W: np.sum(np.maximum(W, 0.0)), W, (W > 0).astype(float))
    assert report.params["W"].kinks == [(0, 0)]
    ax = report.plot()["W"].axes[0]
    labels = [c.get_label() for c in ax.collections]
    assert labels == ["kink"]


def test_demo_writes_pictures(tmp_path, capsys):
    from gradprobe.integrations import cli

    assert cli.main(["demo", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dense_wrong_column: W1 ->" in out
    for name in ("two_layer_net/W1.png", "two_layer_net/W2.png", "dense_wrong_column/W1.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_clear_error_without_matplotlib(monkeypatch, tmp_path, capsys):
    from gradprobe.integrations import cli

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    W = np.ones((2, 2))
    report = gp.check(lambda W: np.sum(W ** 2), W, 2 * W)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        report.plot()
    monkeypatch.setattr(cli, "SEEDS", ())  # only the pictures
    assert cli.main(["demo", "--plot", str(tmp_path)]) == 1
    assert "needs matplotlib" in capsys.readouterr().err


def test_a_file_name_is_one_figure_per_file(tmp_path):
    """Issue 14: ``plot(path="report.png")`` raised IsADirectoryError."""
    W1, W2 = np.ones((2, 3)), np.ones((3, 2))
    two = gp.check(lambda W1, W2: np.sum(W1 ** 2) + np.sum(W2 ** 2), (W1, W2), (2 * W1, 2 * W2))
    one = gp.check(lambda W: np.sum(W ** 2), W1, 2 * W1)
    written = one.plot(path=tmp_path / "report.png")
    assert written == {"W": tmp_path / "report.png"}
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    written = two.plot(str(tmp_path / "sub" / "check.pdf"))
    assert written == {"W1": tmp_path / "sub" / "check_W1.pdf",
                       "W2": tmp_path / "sub" / "check_W2.pdf"}
    assert all(p.read_bytes()[:4] == b"%PDF" for p in written.values())
    assert two.plot(tmp_path / "folder") == {"W1": tmp_path / "folder" / "W1.png",
                                            "W2": tmp_path / "folder" / "W2.png"}


@pytest.mark.parametrize("wrong,expected", [
    ((slice(None), 2), "failing: column 2 (every row)"),
    ((1, slice(None)), "failing: row 1 (every column)"),
    (([0, 2], [1, 3]), "failing: rows 0, 2; columns 1, 3"),
])
def test_the_title_names_the_failing_rows_and_columns(wrong, expected):
    """Issue 14: the heatmap of a wrong column did not say which column."""
    W = np.linspace(0.5, 2.0, 12).reshape(3, 4)
    g = 3 * W ** 2
    g[wrong] *= 1.1
    title = gp.check(lambda W: np.sum(W ** 3), W, g).plot()["W"].axes[0].get_title()
    assert title.splitlines()[-1] == expected
