"""The GPU trainer's switches, exercised on CPU: channels-last memory layout and torch.compile
change how the network runs, not what it predicts; bf16-mixed precision trains and predicts."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

from dlm_ml.cli.config import CONF_DIR
from dlm_ml.models.build import build_network
from dlm_ml.models.module import PCRClassifier
from dlm_ml.training.cross_validation import split_trainer_config

MODELS = ["small_cnn", "longitudinal", "longitudinal_attention", "longitudinal_pool", "resnet10"]


def _net_cfg(model: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=[f"model={model}", "data.patches.patch_size_mm=16",
                                                       "data.patches.spacing_mm=2"]).model.net


def _batch(n: int = 4) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"image": torch.randn(n, 4, 8, 8, 8, generator=g), "present": torch.ones(n, 4, dtype=torch.bool),
            "label": torch.tensor([0.0, 1.0] * (n // 2)), "index": torch.arange(n)}


@pytest.mark.parametrize("model", MODELS)
def test_channels_last_predicts_the_same(model):
    torch.manual_seed(0)
    net = build_network(_net_cfg(model), 0)
    plain = PCRClassifier(net).eval()
    with torch.no_grad():
        expected = plain.predict_step(_batch(), 0)["prob_pcr"]
        fast = PCRClassifier(net, channels_last=True).eval()
        fast.configure_model()
        got = fast.predict_step(_batch(), 0)["prob_pcr"]
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_gpu_trainer_switches_reach_the_module_not_the_trainer():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        trainer_cfg = compose(config_name="train", overrides=["trainer=gpu", "trainer.compile=true"]).trainer
    kept, speed = split_trainer_config(trainer_cfg)
    assert speed == {"channels_last": True, "compile_net": True}
    assert "channels_last" not in kept and "compile" not in kept
    assert kept.precision == "bf16-mixed"


class _Lesions(torch.utils.data.Dataset):
    def __init__(self):
        self.batch = _batch(8)

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.batch.items()}


@pytest.mark.slow  # torch.compile's first compilation takes minutes on 2 cores
def test_bf16_compiled_channels_last_fit_and_predict_on_cpu(tmp_path):
    torch.manual_seed(0)
    module = PCRClassifier(build_network(_net_cfg("small_cnn"), 0), channels_last=True, compile_net=True)
    loader = torch.utils.data.DataLoader(_Lesions(), batch_size=4)
    trainer = pl.Trainer(accelerator="cpu", devices=1, precision="bf16-mixed", max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=str(tmp_path))
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert torch.isfinite(torch.as_tensor(trainer.callback_metrics["val_loss"]))
    prob = torch.cat([o["prob_pcr"] for o in trainer.predict(module, loader)])
    assert prob.shape == (8,) and bool(((prob >= 0) & (prob <= 1)).all())
    assert "_orig_mod" not in "".join(module.net.state_dict()), "compiled in place: state-dict keys unchanged"
