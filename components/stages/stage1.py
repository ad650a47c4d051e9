"""DVC stage `stage1`: cross-entropy on the noisy labels, counting wrong events, label-wave base model."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from components import paths
from components.config import load_params
from components.io import atomic_dir, check_writable, read_json, write_json, write_tsv
from components.models import build_model, save_model_checkpoint
from components.models.build import architecture
from components.stages.common import load_noisy, load_prepared, run_stage
from components.training import distributed
from components.training.resume import checkpoint_folders, stage_checkpoint
from components.training.label_wave import LabelWaveSelector, snapshot
from components.training.loop import accuracy, pick_device, train_epochs
from components.training.optim import build_optimizer, build_schedule
from components.training.runtime import resolve_runtime
from components.training.setup import make_augmenter, make_splits, seed_everything
from components.training.streams import stream_seed


class WrongEventRecorder:
    """Per-sample training dynamics: wrong events, and each epoch's predictions and losses.

    A wrong event is counted once per sample per epoch when the train-mode prediction on the augmented
    view differs from the given label, before that batch's optimiser step: IDO's wrong events (Zhang et al.,
    NeurIPS 2025), counted as its official stage one does.
    """

    def __init__(self, n: int, epochs: int, device: torch.device):
        self.wrong = torch.zeros(n, dtype=torch.int32, device=device)
        self.preds = torch.zeros(epochs, n, dtype=torch.int64, device=device)
        self.losses = torch.zeros(epochs, n, dtype=torch.float32, device=device)

    def record(self, epoch: int, idx: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor) -> None:
        pred = logits.detach().argmax(1)
        self.wrong[idx] += (pred != labels).int()
        self.preds[epoch - 1, idx] = pred
        self.losses[epoch - 1, idx] = losses.detach().float()

    def share(self, epoch: int, idx: torch.Tensor, labels: torch.Tensor, dist: distributed.Distributed) -> None:
        """Under DDP, after the epoch: the rows other ranks trained (`idx`: this rank's), and their wrong events."""
        if not dist.active:
            return
        foreign = torch.ones_like(labels, dtype=torch.bool)
        foreign[idx] = False
        dist.sync_rows(self.preds[epoch - 1], idx)
        dist.sync_rows(self.losses[epoch - 1], idx)
        self.wrong += ((self.preds[epoch - 1] != labels) & foreign).int()

    def prediction_change(self, epoch: int) -> int | None:
        """#samples whose prediction changed since the previous epoch (None at epoch 1)."""
        return None if epoch < 2 else int((self.preds[epoch - 1] != self.preds[epoch - 2]).sum())


def main() -> None:
    params = load_params()
    cfg = params.stage1
    check_writable(files=[paths.STAGE1_LOG, paths.STAGE1_METRICS],
                   folders=[paths.STAGE1, *checkpoint_folders("stage1", params)])
    dist = distributed.setup(pick_device(params.runtime))  # torchrun: this rank's device and process group
    device = dist.device
    runtime = resolve_runtime(params.runtime, device)
    arrays, (y_noisy, verified) = load_prepared(), load_noisy()
    info = read_json(paths.DATA_MANIFEST)
    seed_everything(stream_seed(cfg.seed, "stage1.global"))  # initialisation; order and views: own streams
    splits = make_splits(arrays, y_noisy, info["n_classes"], device, verified,
                         on_device=params.runtime.data_on_device, crop_seed=stream_seed(cfg.seed, "stage1.crops"))
    arch = architecture(params.model, tuple(splits.x_train.shape[1:]), info["n_classes"], x_train=splits.x_train)
    model = runtime.prepare(build_model(arch, weights=params.model.weights).to(device))
    augment = make_augmenter(params.augment, splits, stream_seed(cfg.seed, "stage1.augment"))
    optimizer = build_optimizer(model.parameters(), cfg)
    trainer = dist.wrap(model)  # DDP (global-batch BatchNorm) under torchrun; `model` itself otherwise
    view = distributed.ShardedAugmenter(augment, dist) if dist.active else augment
    recorder = WrongEventRecorder(len(splits.y_train), cfg.epochs, device)
    selector = LabelWaveSelector(cfg.base_model_rule, cfg.epochs, len(splits.y_train))
    state = {"epoch": 1}  # the epoch being trained; batch_loss records into it
    mine: list[torch.Tensor] = []  # the samples this rank trained in the current epoch

    def batch_loss(idx: torch.Tensor):
        logits, _ = trainer(view.weak(splits.x_train[idx]))
        losses = F.cross_entropy(logits, splits.y_train[idx], reduction="none")
        recorder.record(state["epoch"], idx, logits, splits.y_train[idx], losses)
        mine.append(idx)
        return losses.mean(), logits

    def after_epoch(epoch: int, row: dict) -> dict:
        recorder.share(epoch, torch.cat(mine), splits.y_train, dist)
        mine.clear()
        change = recorder.prediction_change(epoch)
        selector.update(epoch, change, model)
        state["epoch"] = epoch + 1
        return {"pred_change": float("nan") if change is None else change}

    resume = stage_checkpoint("stage1", params, sections=("model", "augment", "runtime", "stage1"),
                              inputs=(paths.PREPARED, paths.NOISY),
                              parts={"augment": augment, "recorder": recorder, "selector": selector, "state": state})
    rows = train_epochs(
        model, splits, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=optimizer,
        scheduler=build_schedule(optimizer, cfg), batch_loss=batch_loss, after_epoch=after_epoch,
        seed=stream_seed(cfg.seed, "stage1.batches"),
        label="stage1", runtime=runtime, checkpointer=resume, dist=dist, grad_clip=cfg.grad_clip,
    )
    if dist.is_main():  # one writer; the other ranks wait for it
        write_outputs(model, selector, recorder, rows, arrays, arch, cfg, splits, resume)
    dist.barrier()


def write_outputs(model, selector, recorder, rows, arrays, arch, cfg, splits, resume) -> None:
    """The base model, the last epoch's model, per-sample dynamics, log and metrics (rank 0 only), then drop the
    resume checkpoint."""
    last_state = snapshot(model)  # the end of a fixed-length warm-up (DivideMix, MetaLabelNet: warmup_end: last)
    model.load_state_dict(selector.state)
    base_val = accuracy(model, splits.x_val, splits.y_val)
    with atomic_dir(paths.STAGE1) as out:
        save_model_checkpoint(
            out / paths.BASE_MODEL.name, arch, selector.state, epoch=selector.selected_epoch, rule=cfg.base_model_rule
        )
        save_model_checkpoint(out / paths.LAST_MODEL.name, arch, last_state, epoch=cfg.epochs, rule="last")
        np.savez(
            out / paths.DYNAMICS.name,
            train_idx=arrays["train_idx"],
            wrong_events=recorder.wrong.cpu().numpy(),
            predictions=recorder.preds.cpu().numpy().astype(np.int16),
            losses=recorder.losses.cpu().numpy(),
            pred_change=np.array([r["pred_change"] for r in rows], dtype=np.float64),
        )
    write_tsv(paths.STAGE1_LOG, rows)
    write_json(
        paths.STAGE1_METRICS,
        {
            "base_epoch": selector.selected_epoch,
            "base_val_acc": base_val,
            "final_train_acc": rows[-1]["train_acc"],
            "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])),
            "mean_wrong_events": float(recorder.wrong.float().mean()),
        },
    )
    resume.discard()  # the outputs exist: nothing left to resume
    print(f"stage1: base model = epoch {selector.selected_epoch} ({cfg.base_model_rule}), val_acc {base_val:.4f}")


if __name__ == "__main__":
    raise SystemExit(run_stage("stage1", main))
