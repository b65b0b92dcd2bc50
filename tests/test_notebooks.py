"""The notebooks in notebooks/ are stored without outputs and run top to bottom.

Each notebook has one cell tagged `parameters` (papermill-style). The run test injects a cell
right after it with tiny values (a few steps at 64-208 px, a 2x2 grid) and executes the notebook with
nbclient on the CPU, in a temporary directory; any cell error fails the test. Executed notebooks
are never written back.
"""
import ast
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL_NOTEBOOKS = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


def tiny_parameters(tmp_path: Path) -> dict[str, dict]:
    return {
        "quickstart.ipynb": dict(
            MAX_SIZE=208, SCALE_STEPS="2", STEPS=2, PREVIEW_EVERY=2,
            CONTENT_LAYERS="block2_conv2=0.5,block4_conv2=1", STYLE_LAYER_WEIGHT_EXP=2.0,
            OUTPUT=str(tmp_path / "stylized.png"),
            LOGDIR=str(tmp_path / "runs"), TENSORBOARD=False, UPLOAD=False),
        "fast_networks.ipynb": dict(
            STEPS=2, CROP=48, BATCH=2, WIDTH=4, BLOCKS=1, MAX_SIZE=64,
            MODEL_DIR=str(tmp_path / "net")),
        "coursera_walkthrough.ipynb": dict(
            SIZE=64, STEPS=2, GRID_LAYERS=[1, 5], GRID_RATIOS=[1e6, 1e4],
            GRID_PATH=str(tmp_path / "grid.png")),
    }


def read(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    return notebook


def parameters_index(notebook: nbformat.NotebookNode) -> int:
    tagged = [index for index, cell in enumerate(notebook.cells)
              if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    assert notebook.cells[tagged[0]].cell_type == "code"
    return tagged[0]


def assigned_names(source: str) -> set[str]:
    return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def test_both_notebooks_are_there():
    assert {"quickstart.ipynb", "coursera_walkthrough.ipynb"} <= set(ALL_NOTEBOOKS)


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_stored_without_outputs(name):
    notebook = read(name)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name} cell {index} has outputs: strip them"
            assert cell.execution_count is None, f"{name} cell {index} has an execution count"
    parameters_index(notebook)
    assert "widgets" not in notebook.metadata


def execute(name: str, overrides: dict, workdir: Path,
            timeout: int | None = 600) -> tuple[nbformat.NotebookNode, float]:
    """Run notebooks/`name` in `workdir` with `overrides` injected after its parameters cell;
    `timeout` is per cell, in seconds (None: none)."""
    notebook = read(name)
    index = parameters_index(notebook)
    unknown = set(overrides) - assigned_names(notebook.cells[index].source)
    assert not unknown, f"{name}'s parameters cell does not set {sorted(unknown)}"
    injected = nbformat.v4.new_code_cell(
        "# Injected by tests/test_notebooks.py\n"
        + "\n".join(f"{key} = {value!r}" for key, value in overrides.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    return notebook, time.perf_counter() - start


def outputs_of(notebook: nbformat.NotebookNode, cell_id: str) -> list:
    (cell,) = [cell for cell in notebook.cells if cell.get("id") == cell_id]
    return cell.outputs


def has_picture(outputs) -> bool:
    return any("image/png" in output.get("data", {}) for output in outputs)


def text(outputs) -> str:
    return "".join(output.get("text", "") + output.get("data", {}).get("text/plain", "")
                   for output in outputs)


def test_quickstart_runs(tmp_path):
    overrides = tiny_parameters(tmp_path)["quickstart.ipynb"]
    notebook, seconds = execute("quickstart.ipynb", overrides, tmp_path)
    print(f"quickstart.ipynb ran in {seconds:.0f} s")
    result = Image.open(overrides["OUTPUT"])
    assert max(result.size) == 208
    assert "GPU" in text(outputs_of(notebook, "imports"))
    assert "s per step" in text(outputs_of(notebook, "estimate"))
    assert has_picture(outputs_of(notebook, "choose"))
    assert has_picture(outputs_of(notebook, "run")), "no preview was shown"
    assert has_picture(outputs_of(notebook, "compare"))
    runs = [path for path in Path(overrides["LOGDIR"]).iterdir() if path.is_dir()]
    assert len(runs) == 1 and any(p.name.startswith("events.out") for p in runs[0].iterdir())
    assert outputs_of(notebook, "tensorboard") == []  # TensorBoard is off in CI


def test_walkthrough_runs(tmp_path):
    overrides = tiny_parameters(tmp_path)["coursera_walkthrough.ipynb"]
    notebook, seconds = execute("coursera_walkthrough.ipynb", overrides, tmp_path)
    print(f"coursera_walkthrough.ipynb ran in {seconds:.0f} s")
    grid = Image.open(overrides["GRID_PATH"])
    assert grid.width > grid.height  # 2x2 pictures plus the labels on the left and on top
    for cell_id in ("feature-maps", "content-cost", "gram-pictures", "style-cost", "grid"):
        assert has_picture(outputs_of(notebook, cell_id)), f"cell {cell_id} shows no picture"


def test_fast_networks_runs(tmp_path):
    overrides = tiny_parameters(tmp_path)["fast_networks.ipynb"]
    notebook, seconds = execute("fast_networks.ipynb", overrides, tmp_path)
    print(f"fast_networks.ipynb ran in {seconds:.0f} s")
    assert "2 steps in" in text(outputs_of(notebook, "train"))
    assert (tmp_path / "net" / "model.keras").is_file()
    assert "64x" in text(outputs_of(notebook, "apply"))
    assert has_picture(outputs_of(notebook, "apply"))
    # The bundled networks: Johnson, conditional (its four styles named), AdaIN.
    assert "conditional styles: sample:starry_night," in text(outputs_of(notebook, "bundled"))
    assert has_picture(outputs_of(notebook, "bundled"))
    assert has_picture(outputs_of(notebook, "adain"))
