"""Classify end to end: the real server in a subprocess, called with our cnnserve.v1 stubs (and
tritonclient for the uint8 V2 path). References are computed in this process with an independent
preprocessing and ONNX Runtime on the same files."""

from __future__ import annotations

import asyncio
import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tc
from badrequests import HTTP_STATUS
from harness import (
    Served,
    ServerProcess,
    batched,
    copy_repository,
    http_call,
    model_total,
    scrape,
    start_server,
)
from imagefiles import encode, multipart, png_claiming, random_rgb, reference
from inprocess import InProcessServer, in_process
from PIL import Image

from cnnserve.generated.cnnserve.v1 import service_pb2 as pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as pb_grpc
from cnnserve.server.services.classifier import softmax_top_k

MAX_IMAGES = 8
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 * 1024 * 1024)]


# -- softmax and top-k, in process -----------------------------------------------------------------


def test_softmax_top_k_orders_by_probability_with_ties_in_index_order() -> None:
    logits = np.array([[1.0, 3.0, 3.0, -2.0], [1000.0, 0.0, 999.0, 0.0]], dtype=np.float32)
    top, p = softmax_top_k(logits, 3)
    assert top.tolist() == [[1, 2, 0], [0, 2, 1]]
    full = np.exp(logits[0] - 3.0) / np.exp(logits[0] - 3.0).sum()
    np.testing.assert_allclose(p[0], full[[1, 2, 0]])
    np.testing.assert_allclose(p[1][:2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])  # no overflow
    assert np.isfinite(p).all()


# -- the server ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(small_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small repository plus cifar_resnet20 exported with --uint8-input as ``cifar_u8``."""
    from cnnserve.builders.export import export

    repo = copy_repository(small_repo, tmp_path_factory.mktemp("repo_classify"))
    export("cifar_resnet20", repo, uint8_input=True, entry_name="cifar_u8")
    return repo


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[InProcessServer]:
    with in_process(repo, max_queue_delay_us=20000, max_images_per_request=MAX_IMAGES) as served:
        yield served


@pytest.fixture()
def stub(server: Served) -> Iterator[pb_grpc.CnnServeStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield pb_grpc.CnnServeStub(channel)


def ort_logits(repo: Path, name: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def classify(stub: pb_grpc.CnnServeStub, model: str, images: list[bytes], top_k: int) -> pb.ClassifyResponse:
    return stub.Classify(pb.ClassifyRequest(model_name=model, images=images, top_k=top_k), timeout=60)


def test_classify_equals_preprocessing_plus_onnxruntime_in_process(stub: pb_grpc.CnnServeStub, repo: Path) -> None:
    images = [random_rgb(64, 48, seed=1), random_rgb(40, 90, seed=2), random_rgb(32, 32, seed=3)]
    data = [encode(images[0]), encode(images[1], "JPEG", quality=90), encode(images[2].convert("P"))]
    decoded = [Image.open(io.BytesIO(d)).convert("RGB") for d in data]
    preprocessing = json.loads((repo / "cifar_resnet20" / "config.json").read_text())["preprocessing"]
    x = np.stack([reference(image, preprocessing) for image in decoded]).astype(np.float32)
    want_top, want_p = softmax_top_k(ort_logits(repo, "cifar_resnet20", x), 4)

    reply = classify(stub, "cifar_resnet20", data, 4)
    assert (reply.model_name, reply.model_version, reply.trained) == ("cifar_resnet20", "1", False)
    labels = (repo / "cifar_resnet20" / "labels.txt").read_text().splitlines()
    assert len(reply.results) == 3
    for result, top, p in zip(reply.results, want_top, want_p, strict=True):
        assert [c.index for c in result.classes] == top.tolist()
        assert [c.label for c in result.classes] == [labels[i] for i in top]
        np.testing.assert_allclose([c.probability for c in result.classes], p, rtol=1e-4)

    # The same images through the uint8 export: the same answer from the graph's own normalising.
    folded = classify(stub, "cifar_u8", data, 4)
    for a, b in zip(folded.results, reply.results, strict=True):
        assert [c.index for c in a.classes] == [c.index for c in b.classes]
        np.testing.assert_allclose([c.probability for c in a.classes], [c.probability for c in b.classes], rtol=1e-4)


def test_probabilities_sum_to_one_over_all_classes(stub: pb_grpc.CnnServeStub) -> None:
    reply = classify(stub, "cifar_resnet20", [encode(random_rgb(32, 32))], 10)
    assert sum(c.probability for c in reply.results[0].classes) == pytest.approx(1.0, abs=1e-5)


def test_v2_callers_send_uint8_pixels_to_a_uint8_export(server: Served, repo: Path) -> None:
    pixels = np.random.default_rng(5).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    tensor = tc.InferInput("input", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    with tc.InferenceServerClient(server.grpc_address) as client:
        logits = client.infer("cifar_u8", [tensor]).as_numpy("logits")
    assert logits is not None
    np.testing.assert_allclose(logits, ort_logits(repo, "cifar_u8", pixels), rtol=1e-5, atol=1e-5)
    # And they equal the float32 model on the same pixels normalised outside.
    config = json.loads((repo / "cifar_resnet20" / "config.json").read_text())["preprocessing"]
    mean, std = np.array(config["mean"]), np.array(config["std"])
    x = ((pixels / 255.0 - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    np.testing.assert_allclose(logits, ort_logits(repo, "cifar_resnet20", x), rtol=1e-4, atol=1e-4)


def test_held_out_digits_through_the_server_score_what_export_measured(
    stub: pb_grpc.CnnServeStub, repo: Path, tmp_path: Path
) -> None:
    from cnnserve.builders import digits

    split = digits.load_split()
    # Written as PNG files first, as a user would have them.
    paths = digits.write_held_out(tmp_path)
    predicted = []
    for start in range(0, len(paths), MAX_IMAGES):
        reply = classify(stub, "lenet5", [p.read_bytes() for p in paths[start : start + MAX_IMAGES]], 1)
        predicted += [r.classes[0].index for r in reply.results]
    correct = int((np.array(predicted) == split.test_labels).sum())
    config = json.loads((repo / "lenet5" / "config.json").read_text())
    measured = config["weights"]["held_out_accuracy"]
    assert len(predicted) == config["weights"]["held_out_examples"] == 360
    assert round(correct / len(predicted), 4) == measured, f"{correct}/360 through the server, {measured} at export"
    assert measured > 0.95


def test_concurrent_classify_calls_share_runs(server: Served) -> None:
    images = [encode(random_rgb(32, 32, seed=i).convert("L")) for i in range(24)]

    async def fire() -> list[pb.ClassifyResponse]:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.CnnServeStub(channel)
            calls = [stub.Classify(pb.ClassifyRequest(model_name="lenet5", images=[im], top_k=3)) for im in images]
            return list(await asyncio.gather(*calls))

    before = scrape(server.metrics_address)
    replies = asyncio.run(fire())
    after = scrape(server.metrics_address)
    assert all(len(r.results) == 1 and len(r.results[0].classes) == 3 for r in replies)
    items, batches = batched(before, after, "lenet5")
    assert items == 24
    assert batches < 24, "no two concurrent Classify calls shared an ONNX Runtime run"
    answered = [v for lab, v in after["cnnserve_requests_total"]
                if lab == {"model": "lenet5", "rpc": "Classify", "code": "OK"}]  # fmt: skip
    assert answered and answered[0] >= 24


# -- bad input -------------------------------------------------------------------------------------


def bad_requests() -> dict[str, tuple[dict, grpc.StatusCode, str]]:
    good = encode(random_rgb(32, 32))
    png = encode(random_rgb(48, 48))
    jpeg = encode(random_rgb(48, 48), "JPEG")
    bad = grpc.StatusCode.INVALID_ARGUMENT
    return {
        "not an image": ({"images": [b"GIF89a nonsense"]}, bad, "images[0]: not a PNG or JPEG"),
        "truncated png": ({"images": [png[:300]]}, bad, "images[0]: truncated or corrupt PNG"),
        "truncated jpeg": ({"images": [jpeg[:400]]}, bad, "images[0]: truncated or corrupt JPEG"),
        "empty request": ({"images": []}, bad, "images: empty request"),
        "zero-sized": ({"images": [png_claiming(0, 0)]}, bad, "images[0]: corrupt PNG"),
        "empty bytes": ({"images": [b""]}, bad, "images[0]: empty (0 bytes)"),
        "pixel limit": ({"images": [png_claiming(8000, 8000)]}, bad,
                        "images[0]: 8000x8000 is 64,000,000 pixels, over max_image_pixels 50,000,000"),
        "bomb": ({"images": [png_claiming(200_000, 200_000)]}, bad,
                 "images[0]: over max_image_pixels"),
        "top_k 0": ({"images": [good], "top_k": 0}, bad,
                    "top_k: 0; expected 1 to 10, the classes of model 'cifar_resnet20'"),
        "top_k too large": ({"images": [good], "top_k": 11}, bad, "top_k: 11; expected 1 to 10"),
        "not a classifier": ({"images": [good], "model_name": "alphago_policy"}, bad,
                             "model_name: model 'alphago_policy' is a policy model, not an image classifier"),
        "too many images": ({"images": [good] * (MAX_IMAGES + 1)}, bad,
                            f"images: {MAX_IMAGES + 1} images, more than max_images_per_request {MAX_IMAGES}"),
        "one bad image of three": ({"images": [good, good, b"junk"]}, bad,
                                   "images[2]: not a PNG or JPEG"),
        "unknown model": ({"images": [good], "model_name": "resnet9000"}, grpc.StatusCode.NOT_FOUND,
                          "model_name: unknown model 'resnet9000'"),
        "unknown version": ({"images": [good], "model_version": "7"}, grpc.StatusCode.NOT_FOUND,
                            "model_version: 'cifar_resnet20' has no version '7'"),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(bad_requests()))
def test_bad_requests_get_a_status_naming_the_field(case: str, stub: pb_grpc.CnnServeStub) -> None:
    fields, code, message = bad_requests()[case]
    request = pb.ClassifyRequest(**{"model_name": "cifar_resnet20", "top_k": 3, **fields})
    with pytest.raises(grpc.RpcError) as raised:
        stub.Classify(request, timeout=60)
    assert raised.value.code() == code
    assert message in raised.value.details()
    # The server goes on answering.
    good = classify(stub, "cifar_resnet20", [encode(random_rgb(32, 32))], 2)
    assert len(good.results[0].classes) == 2


@pytest.mark.parametrize("case", list(bad_requests()))
def test_the_same_bad_requests_over_http_get_grpcs_message(
    case: str, server: Served, stub: pb_grpc.CnnServeStub
) -> None:
    fields, code, _ = bad_requests()[case]
    request = pb.ClassifyRequest(**{"model_name": "cifar_resnet20", "top_k": 3, **fields})
    with pytest.raises(grpc.RpcError) as over_grpc:
        stub.Classify(request, timeout=60)
    # One image is the body; none or several, a multipart body.
    images = list(request.images)
    body, content_type = (images[0], "image/png") if len(images) == 1 else multipart(images)
    query = {"top_k": request.top_k, **({"version": request.model_version} if request.model_version else {})}
    status, reply = http_call(server, "POST", f"/v1/models/{request.model_name}/classify?{urlencode(query)}", body,
                              {"Content-Type": content_type})  # fmt: skip
    assert (status, json.loads(reply)) == (HTTP_STATUS[code.name], {"error": over_grpc.value.details()})


def test_a_bad_image_does_not_fail_concurrent_requests(server: Served) -> None:
    good = encode(random_rgb(32, 32))

    async def fire() -> list[object]:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = pb_grpc.CnnServeStub(channel)
            requests = [
                pb.ClassifyRequest(model_name="cifar_resnet20", images=[good if i % 4 else b"x"], top_k=1)
                for i in range(16)
            ]
            calls = [stub.Classify(request) for request in requests]
            return list(await asyncio.gather(*calls, return_exceptions=True))

    outcomes = asyncio.run(fire())
    for i, outcome in enumerate(outcomes):
        if i % 4:
            assert isinstance(outcome, pb.ClassifyResponse), outcome
        else:
            assert isinstance(outcome, grpc.aio.AioRpcError) and outcome.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sigterm_while_images_decode_loses_no_accepted_call(small_repo: Path) -> None:
    """Calls still decoding their images when SIGTERM arrives are computed and answered."""
    proc = start_server(small_repo, "--model", "lenet5", "--decode-threads", "1")
    proc.wait_ready()
    # Large smooth JPEGs: each takes tens of milliseconds to decode, one at a time.
    big = encode(random_rgb(40, 30).resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=90)
    small = encode(random_rgb(32, 32).convert("L"))

    async def load_then_terminate() -> list[pb.ClassifyResponse]:
        async with grpc.aio.insecure_channel(proc.grpc_address, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.CnnServeStub(channel)
            request = pb.ClassifyRequest(model_name="lenet5", images=[big, big, big, small], top_k=2)
            calls = [asyncio.ensure_future(stub.Classify(request)) for _ in range(6)]
            while scrape_inflight(proc, "lenet5") < len(calls):
                await asyncio.sleep(0.02)
            proc.process.send_signal(signal.SIGTERM)
            return list(await asyncio.gather(*calls))

    replies = asyncio.run(load_then_terminate())
    assert proc.terminate() == 0, proc.output
    assert [len(r.results) for r in replies] == [4] * 6
    assert all(r.results[3].classes[0].index == replies[0].results[3].classes[0].index for r in replies)
    assert "shutting down" in proc.output and "stopped" in proc.output


def scrape_inflight(proc: ServerProcess, model: str) -> float:
    return model_total(scrape(proc.metrics_address), model, "cnnserve_inflight_requests")
