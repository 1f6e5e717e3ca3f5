"""Deployment: latency of one image (bench.latency), ONNX export (cnn.export) and int8
quantization (cnn.quantize), and their place in compare's report. CPU, small nets on the digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from bench import cli
from bench.latency import latency_record, measure_latency, pinned_threads, thread_counts
from bench.report import onnx_rows, render_html, render_markdown, summary_rows, vs_float
from bench.runners import classic_latency, cnn_latency
from classicvision.datasets import load_digits_images
from cnn import CNNClassifier
from cnn.export import METADATA_KEY, OnnxPredictor, export_onnx, read_metadata
from cnn.quantize import calibration_indices, quantize_classifier, quantize_onnx

pytestmark = pytest.mark.usefixtures("torch_one_thread")

#: ONNX Runtime's logits may differ from PyTorch's by float32 rounding (other kernels, other
#: summation orders): at most this much, relative to the largest logit.
LOGIT_RTOL = 1e-4
#: int8 top-1 may fall at most this far below the float model's on the digits (points).
INT8_MAX_DROP = 2.0


@pytest.fixture(scope="module")
def digits():
    tr, te = load_digits_images(split="train"), load_digits_images(split="test")
    return tr.images, tr.target, te.images, te.target


@pytest.fixture(scope="module")
def net(digits):
    """small_convnet trained for 8 epochs on the 1,198 training digits (about 97% top-1)."""
    X, y, _, _ = digits
    return CNNClassifier(model="small_convnet", epochs=8, flip=False, random_state=0, num_threads=1).fit(X, y)


# ----------------------------------------------------------------------------- latency
def test_measure_latency_is_time_bounded_and_pins_threads():
    seen = []

    def predict_one(x):
        assert x.shape == (1, 8, 8)
        seen.append((torch.get_num_threads(), [p["num_threads"] for p in threadpool_info()]))

    before = torch.get_num_threads()
    r = measure_latency(predict_one, np.zeros((3, 8, 8), np.uint8), 1, warmup=2, repeats=5, max_seconds=0.05)
    assert set(r) == {"median_ms", "p90_ms", "repeats", "threads"} and r["threads"] == 1
    assert 5 <= r["repeats"] <= 500 and len(seen) == r["repeats"] + 2
    assert 0 <= r["median_ms"] <= r["p90_ms"]
    assert all(t == 1 and all(n == 1 for n in pools) for t, pools in seen)  # torch and BLAS/OpenMP
    assert torch.get_num_threads() == before  # restored


def test_pinned_threads_restores_on_error_and_checks_input():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), pinned_threads(2):
        assert torch.get_num_threads() == 2
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"), pinned_threads(0):
        pass
    with pytest.raises(ValueError, match="at least one image"):
        measure_latency(lambda x: x, np.zeros((0, 4, 4), np.uint8), 1)


def test_latency_record_per_thread_count_and_factory():
    made = []

    def factory(t):
        made.append(t)
        return lambda x: x

    rec = latency_record(None, [np.zeros((4, 4), np.uint8)], threads=[1, 2], max_seconds=0.01,
                         predictor_for=factory)
    assert made == [1, 2] and rec["latency_threads"] == [1, 2]
    assert set(rec["latency_ms"]) == set(rec["latency_p90_ms"]) == {"1", "2"} and rec["latency_batch_size"] == 1
    assert thread_counts()[0] == 1 and len(thread_counts()) <= 2 and thread_counts()[-1] <= 4


def test_classic_and_cnn_latency_on_tiny_models(digits, net):
    """The latency of one decoded image for both tracks, on 1 and N threads; the models'
    parameters (n_jobs, num_threads) are as they were afterwards."""
    from classicvision.presets import make_preset

    X, y, Xte, _ = digits
    pipe = make_preset("hog_svm", n_jobs=2).fit(X[:150], y[:150])
    jobs = {k: v for k, v in pipe.get_params().items() if k.endswith("n_jobs")}
    counts = thread_counts()
    for rec in (classic_latency(pipe, Xte[:4], seconds=0.05), cnn_latency(net, Xte[:4], seconds=0.05)):
        assert rec["latency_threads"] == counts and set(rec["latency_ms"]) == {str(t) for t in counts}
        assert all(v > 0 for v in rec["latency_ms"].values())
    assert {k: v for k, v in pipe.get_params().items() if k.endswith("n_jobs")} == jobs
    assert net.num_threads == 1


# ----------------------------------------------------------------------------- ONNX
def test_onnx_agrees_with_pytorch(net, digits, tmp_path):
    """ONNX Runtime and PyTorch agree on >= 99.9% of the 599 test digits, and the logits are
    within LOGIT_RTOL of the largest logit."""
    _, _, Xte, yte = digits
    path = export_onnx(net, tmp_path / "sub" / "net.onnx")
    ort = OnnxPredictor(path, threads=1)
    assert np.mean(ort.predict(Xte) == net.predict(Xte)) >= 0.999
    ref = net.decision_function(Xte)
    got = ort.decision_function(Xte)
    assert got.shape == ref.shape == (len(Xte), 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=LOGIT_RTOL * np.abs(ref).max())
    np.testing.assert_allclose(ort.predict_proba(Xte), net.predict_proba(Xte), atol=1e-5)
    assert ort.score(Xte, yte) == pytest.approx(net.score(Xte, yte))
    meta = read_metadata(path)
    assert meta["input_size"] == net.input_size_ == 8 and meta["in_chans"] == net.in_chans_ == 1
    assert meta["precision"] == "float32" and meta["classes"] == net.classes_.tolist()


def test_onnx_graph_takes_uint8_with_dynamic_batch_and_flip_tta(digits, tmp_path):
    """The graph's input is the classifier's resized uint8 images; the flip TTA of a
    classifier fitted with flip=True is applied by the predictor, as by the classifier;
    RGB input resized to the classifier's size is converted as the classifier does."""
    import onnx
    import onnxruntime

    X, y, Xte, _ = digits
    rgb = np.repeat(X[:200, :, :, None], 3, axis=3)
    clf = CNNClassifier(model="small_convnet", epochs=1, random_state=0, num_threads=1, input_size=10)
    clf.fit(rgb, y[:200])
    assert clf.tta and clf.flip
    path = export_onnx(clf, tmp_path / "flip.onnx", opset=13)
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 13
    inp = model.graph.input[0]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 10, 10]
    sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        assert sess.run(None, {"image": np.zeros((n, 3, 10, 10), np.uint8)})[0].shape == (n, 10)
    test_rgb = np.repeat(Xte[:50, :, :, None], 3, axis=3)
    np.testing.assert_allclose(OnnxPredictor(path).predict_proba(test_rgb), clf.predict_proba(test_rgb), atol=1e-5)


def test_onnx_predictor_bad_files_are_named(tmp_path, net):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        OnnxPredictor(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(ValueError, match="bad.onnx"):
        OnnxPredictor(bad)
    import onnx

    path = export_onnx(net, tmp_path / "plain.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "nometa.onnx"))
    with pytest.raises(ValueError, match=f"nometa.onnx.*{METADATA_KEY}"):
        OnnxPredictor(tmp_path / "nometa.onnx")
    with pytest.raises(ValueError, match="threads"):
        OnnxPredictor(path, threads=0)
    with pytest.raises(TypeError, match="sequence"):
        OnnxPredictor(path).predict("image.png")


# ----------------------------------------------------------------------------- int8
def test_int8_keeps_top1_within_tolerance_and_is_smaller(net, digits, tmp_path):
    X, _, Xte, yte = digits
    fp32 = export_onnx(net, tmp_path / "float.onnx")
    q = quantize_classifier(net, tmp_path / "int8.onnx", X, n_calibration=128, random_state=0)
    net.save(tmp_path / "float.pt")
    assert q.stat().st_size < 0.5 * fp32.stat().st_size and q.stat().st_size < (tmp_path / "float.pt").stat().st_size
    pred = OnnxPredictor(q, threads=1)
    proba = pred.predict_proba(Xte)
    assert proba.shape == (len(Xte), 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-9)
    labels = pred.predict(Xte)
    assert labels.shape == (len(Xte),) and set(labels) <= set(net.classes_)
    float_top1, int8_top1 = 100 * net.score(Xte, yte), 100 * pred.score(Xte, yte)
    assert float_top1 > 90
    assert int8_top1 >= float_top1 - INT8_MAX_DROP, (float_top1, int8_top1)
    meta = read_metadata(q)
    assert meta["precision"] == "int8" and meta["quantization"]["calibration_images"] == 128
    import onnx

    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_quantize_checks_its_calibration(net, tmp_path):
    fp32 = export_onnx(net, tmp_path / "f.onnx")
    with pytest.raises(ValueError, match="calibration must be uint8"):
        quantize_onnx(fp32, tmp_path / "q.onnx", np.zeros((4, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="quant_format"):
        quantize_onnx(fp32, tmp_path / "q.onnx", np.zeros((4, 1, 8, 8), np.uint8), quant_format="int4")
    import onnx

    model = onnx.load(str(fp32))
    for i, node in enumerate(model.graph.node):  # no node under the exporter's '/net/' scope
        node.name = f"node{i}"
    onnx.save(model, str(tmp_path / "renamed.onnx"))
    with pytest.raises(RuntimeError, match="no int8 operator"):
        quantize_onnx(tmp_path / "renamed.onnx", tmp_path / "q.onnx", np.zeros((4, 1, 8, 8), np.uint8))
    idx = calibration_indices(10, 20, random_state=0)
    assert list(idx) == list(range(10))
    with pytest.raises(ValueError, match="calibration image"):
        calibration_indices(10, 0)


# ----------------------------------------------------------------------------- compare
def test_compare_int8_and_export_onnx(tmp_path, monkeypatch, capsys):
    """--cnn M,M:quantize=int8 --export-onnx: the int8 run reuses the float run's saved model,
    records its own size, latency and accuracy and the change against the float model; the
    float run's ONNX copy is recorded; bench predict reads the int8 file."""
    monkeypatch.setenv("CLASSICVISION_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = cli.main(["compare", "--pipelines", "none", "--cnn", "small_convnet:quantize=int8,small_convnet",
                   "--limit", "100", "--epochs", "1", "--save-models", "--export-onnx", "--out", str(out),
                   "--quiet"])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["options"]["export_onnx"] is True and rep["options"]["latency"] is True
    fl, q = rep["runs"]  # the float run first, whatever the order asked for
    assert fl["name"] == "small_convnet" and q["name"] == "small_convnet:quantize=int8"
    assert q["float_model"] == {"source": "reused", "path": fl["model_path"]}
    assert q["float"]["top1"] == pytest.approx(fl["top1"])
    assert q["float"]["model_bytes"] == fl["model_bytes"]
    assert q["model_path"] == str(out / "models" / "small_convnet_quantize=int8.onnx")
    assert q["model_bytes"] == (out / "models" / "small_convnet_quantize=int8.onnx").stat().st_size
    assert q["model_bytes"] < fl["model_bytes"] / 2
    assert q["quantization"]["format"] == "qdq" and set(q["latency_ms"]) == {str(t) for t in thread_counts()}
    assert "onnx" not in q
    o = fl["onnx"]
    assert o["path"] == str(out / "models" / "small_convnet.onnx") and o["bytes"] > 0
    assert o["agreement"] >= 0.999 and o["top1"] == pytest.approx(fl["top1"], abs=1 / 100)
    assert set(o["latency_ms"]) == {str(t) for t in thread_counts()}
    md = (out / "report.md").read_text()
    assert "## ONNX export" in md and "| vs float |" in md and "x smaller" in md
    assert 'id="onnx"' in (out / "report.html").read_text()
    capsys.readouterr()
    img = tmp_path / "digit.png"
    import cv2

    cv2.imwrite(str(img), load_digits_images(split="test").images[0])
    assert cli.main(["predict", q["model_path"], str(img), "--top-k", "2"]) == 0
    assert "digit.png" in capsys.readouterr().out


def test_compare_no_latency_and_bad_quantize(tmp_path, monkeypatch):
    monkeypatch.setenv("CLASSICVISION_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "r"
    assert cli.main(["compare", "--pipelines", "hog_svm", "--cnn", "small_convnet:quantize=int4", "--limit", "60",
                     "--epochs", "1", "--no-latency", "--out", str(out), "--quiet"]) == 1
    rep = json.loads((out / "report.json").read_text())
    classic, bad = rep["runs"]
    assert classic["status"] == "ok" and "latency_ms" not in classic and rep["options"]["latency"] is False
    assert bad["status"] == "failed" and "quantize='int4'" in bad["error"] and "int8" in bad["error"]
    assert "latency ms" not in (out / "report.md").read_text()


# ----------------------------------------------------------------------------- report
def _report(runs):
    return {"dataset": {"name": "digits", "n_train": 10, "n_test": 10, "classes": ["a", "b"]}, "runs": runs}


def test_report_tables_of_latency_int8_and_onnx(tmp_path):
    base = {"track": "cnn", "status": "ok", "top1": 0.9, "predict_seconds": 1.0, "images_per_second": 10.0,
            "model_bytes": 4_000_000}
    runs = [
        {**base, "name": "r20", "latency_ms": {"1": 2.0, "2": 1.5},
         "onnx": {"bytes": 3_900_000, "top1": 0.9, "agreement": 1.0, "max_abs_logit_diff": 1e-6,
                  "logit_diff_images": 10, "latency_ms": {"1": 1.0, "2": 0.75}}},
        {**base, "name": "r20:quantize=int8", "top1": 0.896, "model_bytes": 1_000_000, "latency_ms": {"1": 0.5},
         "float": {"top1": 0.9, "model_bytes": 4_000_000, "latency_ms": {"1": 2.0}}},
        {**base, "name": "old", "track": "classic"},  # a run recorded before latency was
    ]
    rows = summary_rows(_report(runs))
    assert [r["latency ms (1 thr)"] for r in rows] == ["2.00", "0.50", "–"]
    assert [r["latency ms (2 thr)"] for r in rows] == ["1.50", "–", "–"]
    assert rows[1]["vs float"] == "-0.40 pt, 4.0x smaller, 4.0x faster (1 thr)" and rows[0]["vs float"] == "–"
    assert vs_float({"status": "failed", "float": {}}) == "–"
    (o,) = onnx_rows(_report(runs))
    assert o["ONNX MB"] == "3.900" and o["agreement %"] == "100.00" and o["latency ms (2 thr)"] == "0.75"
    md = render_markdown(_report(runs))
    assert "## ONNX export" in md and "decoding excluded" in md
    assert 'id="onnx"' in render_html(_report(runs), tmp_path)
    plain = summary_rows(_report([runs[2]]))[0]
    assert not any(k.startswith("latency") or k == "vs float" for k in plain)


def test_reproduction_table_shows_the_change_against_float_and_onnx_errors():
    from bench.report import _reproduction_table

    runs = [
        {"name": "resnet20", "track": "cnn", "status": "ok", "top1": 0.88, "params": {"model": "resnet20"},
         "model_bytes": 1_100_000, "onnx": {"error": "UnsupportedOperatorError: aten::foo"}},
        {"name": "resnet20:quantize=int8", "track": "cnn", "status": "ok", "top1": 0.875,
         "params": {"model": "resnet20", "overrides": {"quantize": "int8"}}, "model_bytes": 320_000,
         "float": {"top1": 0.88, "model_bytes": 1_100_000}},
    ]
    rep = {"dataset": {"name": "cifar10", "classes": list("abcdefghij")}, "runs": runs}
    rows = {r["name"]: r for r in _reproduction_table(rep)}
    assert rows["resnet20:quantize=int8"]["vs float"] == "-0.50 pt, 3.4x smaller"
    assert rows["resnet20"]["vs float"] == "–" and rows["resnet20"]["published %"] == "91.25"
    (o,) = onnx_rows(rep)
    assert o["error"].startswith("UnsupportedOperatorError") and o["ONNX MB"] == "–"


def test_classifier_export_onnx_method(net, digits, tmp_path):
    path = net.export_onnx(tmp_path / "m.onnx")
    assert path == tmp_path / "m.onnx"
    assert np.array_equal(OnnxPredictor(path).predict(digits[2]), net.predict(digits[2]))
