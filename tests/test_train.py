"""The training CLI and loop (mixerkern.train) on tiny, learnable synthetic MNIST-format files."""
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mixerkern.models import load
from mixerkern.train import RunConfig, main, parse_config, run
from mixerkern.train.callbacks import EarlyStopping
from mixerkern.train.distributed import Context
from mixerkern.train.loop import RESUME_FILE, NonFiniteLoss, evaluate, prepare_data

pytestmark = pytest.mark.filterwarnings("ignore:.*is not the official")  # synthetic files, own md5s

TINY = {"image_size": 16, "patch_size": 4, "dim": 32, "depth": 1, "token_hidden": 16, "channel_hidden": 32,
        "dropout": 0.0}
REPO = Path(__file__).resolve().parents[1]


def write_idx(path: Path, array: np.ndarray) -> None:
    """gzipped IDX: magic 0x0801 (labels) / 0x0803 (images), big-endian dims, uint8 payload."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def learnable_mnist(folder: Path, n_train=1000, n_test=200, seed=0) -> Path:
    """Class k is a bright horizontal band at rows 2k .. 2k+7 on a noisy background."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 * k:2 * k + 8] += 180
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def mnist_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXERKERN_DATA", str(tmp_path / "cache"))
    return learnable_mnist(tmp_path / "mnist")


def config(data_dir, out, **kw) -> RunConfig:
    base = dict(model="mixer-cifar100", dataset="mnist", data_dir=str(data_dir), download=False, epochs=2,
                batch_size=32, out=str(out), progress=False, threads=1, device="cpu", overrides=dict(TINY))
    return RunConfig(**{**base, **kw})



def final_state(out: Path) -> dict:
    return torch.load(out / RESUME_FILE, weights_only=True)


def test_two_epochs_learn_and_write_every_output(mnist_dir, tmp_path):
    out = tmp_path / "run"
    test = run(config(mnist_dir, out))
    assert test["test_acc"] > 0.9, test
    for name in ("metrics.csv", "history.json", "curves.png", "last.safetensors", "best.safetensors",
                 "test_metrics.json", "run.json", RESUME_FILE):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"loss", "acc", "top5", "val_loss", "val_acc", "val_top5", "lr", "img_per_s", "data_s"} <= set(history[0])
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    assert json.loads((out / "test_metrics.json").read_text())["test_acc"] == test["test_acc"]
    model = load(out)  # the best checkpoint, rebuilt from its own config
    assert model.config["in_chans"] == 1 and model.config["num_classes"] == 10 and not model.training
    # The test metrics come from the restored best weights: the saved best model reproduces them.
    best = min(history, key=lambda h: h["val_loss"])["epoch"]
    assert test["best_epoch"] == best
    cfg = config(mnist_dir, out)
    data = prepare_data(cfg, TINY["image_size"])
    assert evaluate(model, data.test, data.preprocess, cfg, Context())["acc"] == test["test_acc"]


def test_resumed_run_ends_in_the_same_state(mnist_dir, tmp_path):
    straight = tmp_path / "straight"
    run(config(mnist_dir, straight, epochs=3))

    def kill_mid_epoch(epoch, step):
        if epoch == 1 and step == 3:
            raise KeyboardInterrupt

    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        run(config(mnist_dir, broken, epochs=3), on_step=kill_mid_epoch)
    assert final_state(broken)["epoch"] == 1  # the killed epoch is lost, nothing more
    run(config(mnist_dir, broken, epochs=3, resume=True))
    a, b = final_state(straight), final_state(broken)
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    strip = lambda hist: [{k: v for k, v in h.items() if k not in ("img_per_s", "data_s", "epoch_s")} for h in hist]
    assert strip(a["history"]) == strip(b["history"])
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]


def test_early_stopping_restores_the_best_weights():
    model = torch.nn.Linear(2, 2)
    stopper = EarlyStopping(patience=2)
    snapshots = []
    for epoch, val_loss in enumerate([3.0, 2.0, 2.5, 2.1]):
        with torch.no_grad():
            model.weight.add_(1.0)
        snapshots.append(model.weight.clone())
        stop = stopper.step(val_loss, epoch, model)
    assert stop and stopper.best_epoch == 1
    stopper.restore(model)
    assert torch.equal(model.weight, snapshots[1])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path):
    out = tmp_path / "nan"
    cfg = config(mnist_dir, out, epochs=3)
    holder = {}

    def poison(epoch, step):
        if epoch == 1 and step == 0:
            with torch.no_grad():
                next(holder["model"].parameters()).fill_(float("nan"))

    import mixerkern.train.loop as loop
    original = loop.create_model

    def spy(*a, **k):
        holder["model"] = original(*a, **k)
        return holder["model"]

    loop.create_model = spy
    try:
        with pytest.raises(NonFiniteLoss, match="epoch 2"):
            run(cfg, on_step=poison)
    finally:
        loop.create_model = original
    state = final_state(out)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_config(["--model", "mixer-cifar100", "--resume", "--out", str(tmp_path / "none")])
    assert exc.value.code == 2 and "--resume" in capsys.readouterr().err
    for bad in (["--epochs", "0"], ["--override", "num_classes=3"], ["--override", "depth"], ["--dataset", "svhn"],
                ["--override", "nonsense=1"], ["--override", "image_size=60"], ["--weight-decay", "-1"],
                ["--seed", str(2**40)]):
        with pytest.raises(SystemExit):
            parse_config(["--model", "mixer-cifar100", *bad])
    assert not parse_config(["--model", "mixer-cifar100", "--dataset", "mnist"]).flips()  # digits: no mirror
    assert parse_config(["--model", "mixer-cifar100", "--dataset", "cifar10"]).flips()
    assert parse_config(["--model", "mixer-cifar100", "--dataset", "mnist", "--flip"]).flips()
    code = main(["--model", "mixer-cifar100", "--dataset", "cifar100", "--data-dir", str(tmp_path),
                 "--no-download", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "cifar-100-python.tar.gz" in err


def test_resume_refuses_a_different_run_and_a_fresh_run_refuses_an_old_directory(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    run(config(mnist_dir, out, epochs=1))
    base = ["--model", "mixer-cifar100", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--out", str(out),
            "--batch-size", "32", *[a for k, v in TINY.items() for a in ("--override", f"{k}={v}")]]
    assert parse_config([*base, "--resume"]).resume  # the same settings: accepted
    with pytest.raises(SystemExit):
        parse_config([*base, "--resume", "--seed", "7"])
    assert "seed 42 vs 7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(base)
    assert "--resume" in capsys.readouterr().err


def test_help_runs_as_a_module():
    res = subprocess.run([sys.executable, "-m", "mixerkern.train", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--model", "--dataset", "--data-dir", "--epochs", "--batch-size", "--lr", "--weight-decay",
                 "--fused", "--no-fused", "--bf16", "--threads", "--seed", "--limit", "--out", "--resume"):
        assert flag in res.stdout, flag


def test_two_process_ddp_matches_one_process(mnist_dir, tmp_path):
    # 410 images: 369 for training, so the last global batch (49) splits unevenly, 24 / 25.
    args = ["--model", "mixer-cifar100", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--no-download",
            "--epochs", "1", "--batch-size", "64", "--limit", "410", "--quiet", "--device", "cpu",
            *[a for k, v in TINY.items() for a in ("--override", f"{k}={v}")]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    single, double = tmp_path / "single", tmp_path / "ddp"
    subprocess.run([sys.executable, "-m", "mixerkern.train", *args, "--out", str(single), "--threads", "1"],
                   check=True, env=env, cwd=REPO, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "mixerkern.train", *args, "--out", str(double), "--threads", "1"],
                   check=True, env=env, cwd=REPO, capture_output=True)
    a, b = final_state(single), final_state(double)
    for key in a["model"]:
        assert torch.allclose(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5), key
    ha, hb = a["history"][0], b["history"][0]
    for k in ("loss", "acc", "val_loss", "val_acc"):
        assert abs(ha[k] - hb[k]) < 1e-4, (k, ha[k], hb[k])
