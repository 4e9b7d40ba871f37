import os
import pickle

import pytest
import torch

from egoasl.errors import DataError, EgoaslError
from egoasl.io.checkpoint import Checkpoint, load_checkpoint, load_training_state, save_checkpoint


def test_round_trip_weights_ema_meta_and_state(tmp_path):
    model = {"w": torch.randn(3, 4), "b": torch.zeros(3), "norm": torch.tensor(100.0)}
    ema = {k: v + 1 for k, v in model.items()}
    state = {"optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]}, "epoch": 3}
    save_checkpoint(tmp_path, "last", Checkpoint(model, ema, {"epoch": 3, "average_mAP": 51.5}, state))
    ck = load_checkpoint(tmp_path / "last.safetensors", with_state=True)
    for k in model:
        torch.testing.assert_close(ck.model[k], model[k])
        torch.testing.assert_close(ck.ema[k], ema[k])
    assert ck.meta == {"epoch": 3, "average_mAP": 51.5}
    assert ck.state["epoch"] == 3 and ck.state["optimizer"]["param_groups"][0]["lr"] == 0.1
    assert ck.inference_weights() is ck.ema
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "last.state.pt"
    with open(path, "wb") as f:
        pickle.dump({"epoch": Evil()}, f)
    with pytest.raises(DataError, match="last.state.pt"):
        load_training_state(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(EgoaslError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="bad.safetensors"):
        load_checkpoint(bad)
