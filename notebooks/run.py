#!/usr/bin/env python3
"""Runs the tutorial notebooks headless and collects what they produce.

    python notebooks/run.py [--out out/tutorial] [--timeout SECONDS] [--no-html] [--publish DIR] [--fresh]
                            [NOTEBOOK ...]

Each notebook (default: 01_simple_nn, 02_simple_cnn then 03_resnet, in that order, because chapter 2
loads chapter 1's history and chapter 3 loads both) is executed with nbclient in a Jupyter kernel
running this same Python, with the output folder as its working directory, so the history pickles the
notebooks write (``simplenn_history.txt``, ``scnn_history.txt``, ``resnet_history.txt``) land there
too. Into the output folder go:

    <name>.ipynb                   the executed notebook, outputs and figures included
    <name>.html                    the same as HTML (when nbconvert is installed)
    figures/<name>/<figure>.png    every figure the notebook showed, named from the cell metadata
    simplenn_history.txt, scnn_history.txt, resnet_history.txt
    summary.json                   per notebook: wall time, per-cell times, the size knob it ran with,
                                   the model's parameter total, and per fit: each epoch's metrics and time
    RESULTS.md                     the article's printed figures next to this run's, with the figures

The training progress bars are echoed to this console as the notebook runs. The notebooks' size knob
(``KANDLE_TUTORIAL_SAMPLES``, ``KANDLE_TUTORIAL_TEST_SAMPLES``, ``KANDLE_TUTORIAL_EPOCHS``,
``KANDLE_TUTORIAL_EXTRA_EPOCHS``) is read from the environment; unset, they run the article in full.

Runs resume. Every ``fit`` in a notebook backs itself up at each epoch end (``KANDLE_FIT_BACKUP_DIR``
points kandle's automatic ``BackupAndRestore`` at ``<out>/backups/<notebook>``), and summary.json is
written after each notebook. Run the same command again after an interruption: notebooks that finished
with the same size knob are skipped, the interrupted one runs again from its first cell, its finished
fits come back from their backups at once (weights and History) and the interrupted fit continues after
its last completed epoch, so an interruption costs at most the epoch it hit. A notebook's backups are
deleted once it has finished. ``--fresh`` forgets an earlier run in the output folder and starts over.

``--publish DIR`` also copies RESULTS.md and the figures it shows into DIR (e.g. ``notebooks``), which
is how the committed notebooks/RESULTS.md is made from a full run; ``--report-only`` does that from an
earlier run's summary.json without running anything:
``python notebooks/run.py --out out/tutorial --report-only --publish notebooks``.

Needs: nbclient, nbformat, ipykernel (and what the notebooks import: matplotlib, seaborn, pandas,
scikit-learn, scipy, Pillow); nbconvert for the HTML. ``pip install "kandle[notebook]"`` has them all.
"""

import argparse
import datetime
import json
import os
import pickle
import platform
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = ("01_simple_nn.ipynb", "02_simple_cnn.ipynb", "03_resnet.ipynb")
KNOB_VARS = ("KANDLE_TUTORIAL_SAMPLES", "KANDLE_TUTORIAL_TEST_SAMPLES", "KANDLE_TUTORIAL_EPOCHS",
             "KANDLE_TUTORIAL_EXTRA_EPOCHS")
HISTORY_FILES = {"01_simple_nn": "simplenn_history.txt", "02_simple_cnn": "scnn_history.txt",
                 "03_resnet": "resnet_history.txt"}
KERNEL_NAME = "kandle-tutorial"

# The article's printed chapter-2 log (its Keras 2.1 / TensorFlow run on a GPU, full data): every epoch
# of the 10-epoch fit ("first 10") and of the 20 further epochs ("next 20"), as the article printed them.
ARTICLE_LOG = os.path.join(HERE, "article_ch2_log.tsv")
# The paragraph on where and why kandle's curves differ from the article's, written after a full run.
DISCUSSION = os.path.join(HERE, "results_discussion.md")
_ARTICLE_COLUMNS = ("loss", "acc", "val_loss", "val_acc", "val_mean_squared_error")


def article_log(path=ARTICLE_LOG):
    """{'first 10': {epoch: {column: value}}, 'next 20': {...}} from the article's log."""
    runs = {}
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip() and not line.startswith("#")]
    header, body = rows[0], rows[1:]
    for row in body:
        record = dict(zip(header, row))
        values = {k: float(v) for k, v in record.items() if k not in ("run", "epoch") and v}
        runs.setdefault(record["run"], {})[int(record["epoch"])] = values
    return runs


# ---------------------------------------------------------------------------------------------- kernel
def install_kernel(tmpdir):
    """A kernelspec running *this* interpreter, found first through JUPYTER_PATH, so the notebooks
    use the environment kandle is installed in whatever other 'python3' kernels the machine has."""
    folder = os.path.join(tmpdir, "kernels", KERNEL_NAME)
    os.makedirs(folder)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (kandle tutorial)", "language": "python"}
    with open(os.path.join(folder, "kernel.json"), "w") as f:
        json.dump(spec, f)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (tmpdir, os.environ.get("JUPYTER_PATH")) if p)


def make_client(nb, out_dir, timeout, echo):
    from nbclient import NotebookClient

    class EchoingClient(NotebookClient):
        """Echoes the cells' stdout/stderr (the training progress bars) to this console as it comes."""

        def output(self, outs, msg, display_id, cell_index):
            if echo and msg.get("msg_type") == "stream":
                stream = sys.stderr if msg["content"].get("name") == "stderr" else sys.stdout
                stream.write(msg["content"].get("text", ""))
                stream.flush()
            return super().output(outs, msg, display_id, cell_index)

    return EchoingClient(nb, timeout=timeout, kernel_name=KERNEL_NAME, startup_timeout=120,
                         resources={"metadata": {"path": out_dir}}, coalesce_streams=True,
                         record_timing=True, allow_errors=False)


# ------------------------------------------------------------------------------------ reading outputs
def cell_text(cell, name="stdout"):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == name)


def cell_seconds(cell):
    ex = cell.get("metadata", {}).get("execution", {})
    start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return round((parse(end) - parse(start)).total_seconds(), 3)


_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)( \(restored from backup\))?\s*$", re.M)
_TIME = re.compile(r"\]\s+-\s+(?:ETA:\s*)?(\d+(?:\.\d+)?)(ms|s|m|h)\b")
_METRIC = re.compile(r"\s-\s([A-Za-z_][\w]*):\s+([-+0-9.eE]+|nan|inf)")


def _seconds(value, unit):
    return float(value) * {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def parse_fit(text):
    """Epoch records from a fit cell's (coalesced) progress-bar text: the last progress line of each
    epoch carries the epoch's time and its metrics."""
    epochs = []
    marks = list(_EPOCH.finditer(text))
    for i, m in enumerate(marks):
        body = text[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)]
        lines = [ln for ln in body.splitlines() if "[" in ln and "]" in ln]
        if not lines:
            continue
        last = lines[-1]
        record = {"epoch": int(m.group(1)), "of": int(m.group(2))}
        if m.group(3):  # an epoch of an earlier, interrupted run, brought back by BackupAndRestore
            record["restored"] = True
        t = _TIME.search(last)
        if t:
            record["seconds"] = _seconds(*t.groups())
        record.update({k: float(v) for k, v in _METRIC.findall(last)})
        epochs.append(record)
    return epochs


def extract(nb, stem, out_dir):
    """Figures to PNG files, and the facts summary.json records, from an executed notebook."""
    import base64

    fig_dir = os.path.join(out_dir, "figures", stem)
    os.makedirs(fig_dir, exist_ok=True)
    figures, fits, cells, knob, params = [], {}, [], None, None
    code_index = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code_index += 1
        meta = cell.get("metadata", {}).get("kandle", {})
        names = list(meta.get("figures", []))
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", [])
                if o.get("output_type") in ("display_data", "execute_result") and "image/png" in o.get("data", {})]
        for k, data in enumerate(pngs):
            name = names[k] if k < len(names) else f"cell{code_index:02d}_{k + 1}"
            path = os.path.join(fig_dir, name + ".png")
            with open(path, "wb") as f:
                f.write(base64.b64decode(data))
            figures.append(os.path.relpath(path, out_dir).replace(os.sep, "/"))
        text = cell_text(cell)
        if meta.get("size_knob"):
            m = re.search(r"kandle size knob: (\d+) training images, (\d+) test images, (\d+) epochs"
                          r"(?: \+ (\d+) more)?", text)
            if m:
                knob = {"train_images": int(m.group(1)), "test_images": int(m.group(2)),
                        "epochs": int(m.group(3))}
                if m.group(4):
                    knob["extra_epochs"] = int(m.group(4))
        m = re.search(r"Total params: ([\d,]+)", text)
        if m:
            params = int(m.group(1).replace(",", ""))
        seconds = cell_seconds(cell)
        if meta.get("fit"):
            fits[meta["fit"]] = {"cell": code_index, "cell_seconds": seconds, "epochs": parse_fit(text)}
        cells.append({"cell": code_index, "seconds": seconds, "first_line": cell.source.split("\n", 1)[0][:80]})
    return {"figures": figures, "fits": fits, "cells": cells, "size_knob": knob, "total_params": params}


# ------------------------------------------------------------------------------------------ RESULTS.md
def _fmt(v, digits=4):
    return "—" if v is None else f"{v:.{digits}f}"


def _epoch_table(epochs, article=None):
    """One row per epoch: kandle's loss, acc, val_loss, val_acc, val_mse and seconds, each beside the
    article's value where `article` ({epoch: {column: value}}) is given."""
    names = ("loss", "acc", "val_loss", "val_acc", "val_mse")
    head = ["epoch"]
    for n in names:
        head += ([f"article {n}"] if article is not None else []) + [f"kandle {n}"]
    head.append("kandle s/epoch")
    rows = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for e in epochs:
        art = (article or {}).get(e["epoch"], {})
        cells = [str(e["epoch"]) + (" (restored)" if e.get("restored") else "")]
        for n, key in zip(names, _ARTICLE_COLUMNS):
            ours = e.get(key, e.get("val_mse")) if key == "val_mean_squared_error" else e.get(key)
            cells += ([_fmt(art.get(key))] if article is not None else []) + [_fmt(ours)]
        cells.append(_fmt(e.get("seconds"), 0))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _peak(epochs):
    best = max((e for e in epochs if e.get("val_acc") is not None), key=lambda e: e["val_acc"], default=None)
    return "—" if best is None else f"{best['val_acc']:.4f} (epoch {best['epoch']})"


def _gap(fit, article):
    """kandle's val_acc minus the article's, over the epochs both have."""
    gaps = [(e["epoch"], e["val_acc"] - article[e["epoch"]]["val_acc"]) for e in fit["epochs"]
            if e.get("val_acc") is not None and "val_acc" in article.get(e["epoch"], {})]
    if not gaps:
        return ""
    worst = max(gaps, key=lambda g: abs(g[1]))
    mean = sum(g for _, g in gaps) / len(gaps)
    return (f"val_acc, kandle minus article, over {len(gaps)} epochs: mean {mean:+.4f}, largest {worst[1]:+.4f} "
            f"(epoch {worst[0]}).")


def _per_epoch(fit):
    eps = [e["seconds"] for e in fit["epochs"] if "seconds" in e]
    wall = fit.get("cell_seconds")
    restored = sum(1 for e in fit["epochs"] if e.get("restored"))
    n = len(fit["epochs"]) - restored  # the fit cell's wall time covers only the epochs run in it
    parts = []
    if eps:
        parts.append(f"{sum(eps) / len(eps):.0f} s per epoch by the progress bar")
    if wall and n:
        parts.append(f"{wall / n:.0f} s per epoch by the fit cell's wall time ({wall:.0f} s for {n} epochs)")
    if restored:
        parts.append(f"{restored} epoch(s) ran in an earlier, interrupted run and were restored from its backup")
    return "; ".join(parts) or "not recorded"


def results_markdown(summary, fig_prefix="figures"):
    env = summary["environment"]
    knobs = {k: v for k, v in env["size_knob_env"].items() if v}
    lines = ["# The article's figures next to a kandle run", ""]
    lines.append(f"Produced by `{summary['command']}` on {summary['finished'][:10]} "
                 f"({env['platform']}, {env['cpus']} CPUs, Python {env['python']}, kandle {env['kandle']}).")
    if knobs:
        lines += ["", "**This run used the size knob (" + ", ".join(f"{k}={v}" for k, v in knobs.items()) +
                  "), not the full data: its numbers are not comparable with the article's.**"]
    else:
        lines += ["", "Full data: 50,000 training and 10,000 test images of CIFAR-100, the article's epochs."]
    ch1, ch2 = summary["notebooks"].get("01_simple_nn"), summary["notebooks"].get("02_simple_cnn")
    ch3 = summary["notebooks"].get("03_resnet")
    article = article_log() if os.path.exists(ARTICLE_LOG) else {}
    if ch2 and "scnn" in ch2["fits"]:
        fit = ch2["fits"]["scnn"]
        lines += ["", "## Chapter 2: the simple CNN, 10 epochs", "",
                  "Beside each kandle figure, the article's printed one (Keras 2.1 on a GPU; "
                  "`notebooks/article_ch2_log.tsv`).", "",
                  _epoch_table(fit["epochs"], article.get("first 10", {})), "", _gap(fit, article.get("first 10", {}))]
        note = f"Time: {_per_epoch(fit)}."
        if ch2.get("total_params"):
            note += f" Parameters: {ch2['total_params']:,} (article: 6,850,792)."
        lines.append(note)
    if ch2 and "scnn_more" in ch2["fits"]:
        fit = ch2["fits"]["scnn_more"]
        more = article.get("next 20", {})
        lines += ["", f"## Chapter 2: {len(fit['epochs'])} more epochs (over-fitting)", "",
                  f"Validation accuracy peaks at {_peak(fit['epochs'])} in kandle"
                  + (f", at {_peak([dict(v, epoch=k) for k, v in sorted(more.items())])} in the article" if more else "")
                  + ".", "", _epoch_table(fit["epochs"], more), "", _gap(fit, more), f"Time: {_per_epoch(fit)}."]
    if ch1 and "snn" in ch1["fits"]:
        fit = ch1["fits"]["snn"]
        lines += ["", "## Chapter 1: the simple dense network", "",
                  _epoch_table(fit["epochs"]), "", f"Time: {_per_epoch(fit)}."]
    if ch3 and "resnet" in ch3["fits"]:
        fit = ch3["fits"]["resnet"]
        lines += ["", "## Chapter 3: ResNet50", "", _epoch_table(fit["epochs"]), ""]
        note = f"Time: {_per_epoch(fit)}."
        if ch3.get("total_params"):
            note += f" Parameters: {ch3['total_params']:,} (the assignment's 64x64, 6-class model: 23,600,006)."
        lines.append(note)
    if os.path.exists(DISCUSSION):
        with open(DISCUSSION, encoding="utf-8") as f:
            lines += ["", f.read().strip()]
    lines += ["", "## Figures", ""]
    for stem, nb in summary["notebooks"].items():
        for fig in nb["figures"]:
            rel = fig.split("/", 1)[1] if fig.startswith("figures/") else fig
            name = os.path.splitext(os.path.basename(fig))[0]
            lines.append(f"### {stem}: {name}\n\n![{stem} {name}]({fig_prefix}/{rel})\n")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------- main
def run_notebook(path, out_dir, timeout, html, echo):
    import nbformat
    from nbclient.exceptions import CellExecutionError

    stem = os.path.splitext(os.path.basename(path))[0]
    nb = nbformat.read(path, as_version=4)
    kernelspec = dict(nb.metadata.get("kernelspec", {}))
    print(f"=== {stem}: running {path} in {out_dir}", flush=True)
    start = time.monotonic()
    error = None
    try:
        make_client(nb, out_dir, timeout, echo).execute()
    except CellExecutionError as e:
        error = e
    except Exception as e:  # timeout, dead kernel: keep what ran
        error = e
    elapsed = time.monotonic() - start
    if kernelspec:
        nb.metadata["kernelspec"] = kernelspec  # keep the notebook's own kernel, not the temporary one
    nbformat.write(nb, os.path.join(out_dir, stem + ".ipynb"))
    if html:
        try:
            from nbconvert import HTMLExporter
        except ImportError:
            print("nbconvert is not installed: no HTML (pip install nbconvert)", file=sys.stderr)
        else:
            body, _ = HTMLExporter().from_notebook_node(nb)
            with open(os.path.join(out_dir, stem + ".html"), "w", encoding="utf-8") as f:
                f.write(body)
    info = extract(nb, stem, out_dir)
    info["seconds"] = round(elapsed, 1)
    info["error"] = None if error is None else f"{type(error).__name__}: {str(error)[-2000:]}"
    history = HISTORY_FILES.get(stem)
    if history and os.path.exists(os.path.join(out_dir, history)):
        with open(os.path.join(out_dir, history), "rb") as f:
            info["history"] = {k: list(v) for k, v in dict(pickle.load(f)).items()}
    print(f"=== {stem}: {'FAILED' if error else 'done'} in {elapsed:.0f} s", flush=True)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to run, in order (default: chapters 1, 2 and 3)")
    parser.add_argument("--out", default=os.path.join("out", "tutorial"), help="output folder (default out/tutorial)")
    parser.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default: none)")
    parser.add_argument("--no-html", action="store_true", help="don't write HTML copies")
    parser.add_argument("--quiet", action="store_true", help="don't echo the notebooks' output")
    parser.add_argument("--publish", metavar="DIR", help="also copy RESULTS.md and its figures into DIR")
    parser.add_argument("--fresh", action="store_true",
                        help="forget an earlier run in the output folder (its summary and fit backups)")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild RESULTS.md (and --publish) from the output folder's summary.json")
    args = parser.parse_args(argv)

    paths = args.notebooks or [os.path.join(HERE, n) for n in NOTEBOOKS]
    out_dir = os.path.abspath(args.out)
    if args.report_only:
        with open(os.path.join(out_dir, "summary.json")) as f:
            summary = json.load(f)
        return write_reports(summary, out_dir, args.publish, failed=False)
    os.makedirs(out_dir, exist_ok=True)

    import kandle

    summary = {
        "command": " ".join(["python", os.path.relpath(os.path.abspath(__file__))] + (argv if argv is not None else sys.argv[1:])),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "environment": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                        "kandle": getattr(kandle, "__version__", "?"), "executable": sys.executable,
                        "size_knob_env": {k: os.environ.get(k) for k in KNOB_VARS}},
        "notebooks": {},
    }
    if os.environ.get("KANDLE_TUTORIAL_COMMAND"):  # scripts/tutorial.sh names itself
        summary["command"] = os.environ["KANDLE_TUTORIAL_COMMAND"]
    summary_path = os.path.join(out_dir, "summary.json")
    backups = os.path.join(out_dir, "backups")
    if args.fresh:
        shutil.rmtree(backups, ignore_errors=True)
    elif os.path.exists(summary_path):
        summary = resumed_summary(summary, summary_path)
    failed = False
    with tempfile.TemporaryDirectory(prefix="kandle-kernel-") as tmp:
        install_kernel(tmp)
        for path in paths:
            stem = os.path.splitext(os.path.basename(path))[0]
            done = summary["notebooks"].get(stem)
            if done and done.get("error") is None and os.path.exists(os.path.join(out_dir, stem + ".ipynb")):
                print(f"=== {stem}: finished in an earlier run ({done['seconds']:.0f} s), skipped", flush=True)
                continue
            os.environ["KANDLE_FIT_BACKUP_DIR"] = os.path.join(backups, stem)
            info = run_notebook(path, out_dir, args.timeout, not args.no_html, not args.quiet)
            summary["notebooks"][stem] = info
            write_json(summary_path, summary)
            if info["error"]:
                failed = True
                print(f"{stem} failed: {info['error']}", file=sys.stderr)
                break
            shutil.rmtree(os.path.join(backups, stem), ignore_errors=True)
    summary["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_json(summary_path, summary)
    status = write_reports(summary, out_dir, args.publish, failed)
    print(f"outputs in {out_dir}: executed notebooks{'' if args.no_html else ' and HTML'}, figures/, "
          "history pickles, summary.json, RESULTS.md")
    return status


def resumed_summary(summary, path):
    """An earlier run's summary.json, continued: its finished notebooks are kept when they ran with the
    size knob of this run (else the earlier run is forgotten), and this run is recorded as a resume."""
    with open(path) as f:
        earlier = json.load(f)
    if earlier.get("environment", {}).get("size_knob_env") != summary["environment"]["size_knob_env"]:
        print("=== the output folder holds a run with another size knob: starting over", flush=True)
        return summary
    earlier.setdefault("resumed", []).append(summary["started"])
    earlier["environment"] = summary["environment"]
    print(f"=== resuming the run started {earlier.get('started')} in this folder", flush=True)
    return earlier


def write_json(path, value):
    """Atomically: a run killed while writing keeps the previous summary."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def write_reports(summary, out_dir, publish, failed):
    """RESULTS.md into the output folder and, with ``publish``, with its figures into that folder."""
    with open(os.path.join(out_dir, "RESULTS.md"), "w", encoding="utf-8") as f:
        f.write(results_markdown(summary))
    if publish and failed:
        print("not publishing: a notebook failed", file=sys.stderr)
    elif publish:
        dest = os.path.abspath(publish)
        with open(os.path.join(dest, "RESULTS.md"), "w", encoding="utf-8") as f:
            f.write(results_markdown(summary))
        for nb in summary["notebooks"].values():
            for fig in nb["figures"]:
                target = os.path.join(dest, fig)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(os.path.join(out_dir, fig), target)
        print(f"published RESULTS.md and figures/ into {dest}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
