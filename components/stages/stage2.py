"""DVC stage `stage2`: train the registered robust method, from stage one's base model or from scratch."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from components import paths
from components.paths import Stage2Outputs
from components.config import TRUSTED_SPLIT_METHODS, load_params, validate_params
from components.errors import LnlError
from components.io import atomic_dir, check_writable, read_json, write_json, write_tsv
from components.methods import get_method
from components.evaluation.labelfree import LowestClidSelector
from components.methods.base import MethodContext
from components.methods.meta_common import unlabelled_subset
from components.models import build_model, load_model_checkpoint, save_model_checkpoint
from components.stages.common import load_noisy, load_prepared, read_npz, run_stage
from components.training import distributed
from components.training.resume import checkpoint_folders, stage_checkpoint
from components.training.label_wave import snapshot
from components.training.loop import pick_device, train_epochs
from components.training.optim import build_optimizer, build_schedule
from components.training.runtime import resolve_runtime
from components.training.setup import make_augmenter, make_splits, seed_everything
from components.training.streams import stream_seed


def labelfree_selector(cfg, splits, augment_cfg, seed: int) -> LowestClidSelector | None:
    """The lowest-CLID selector over a fixed unlabelled pool of training images (None when disabled)."""
    if not cfg.enabled:
        return None
    subset = unlabelled_subset(len(splits.y_train), cfg.pool_size, seed=stream_seed(seed, "selection.pool"))
    pool = splits.x_train[subset.to(splits.x_train.device)]
    transform = None
    if cfg.transform == "train_strong":
        transform = make_augmenter(augment_cfg, splits, stream_seed(seed, "selection.transform")).strong
    return LowestClidSelector(pool, k=cfg.k, tau=cfg.tau, transform=transform)


def resolve_init(requested: str | None, method_cls: type, method: str) -> str:
    """stage2.init, or the method's default; a start the method cannot use is an error before any work."""
    init = requested or method_cls.DEFAULT_INIT
    if init not in method_cls.INITS:
        raise LnlError(f"stage2.init: method '{method}' supports only {' | '.join(method_cls.INITS)} (got '{init}')")
    return init


def checkpoint_name(out: Path | None) -> str:
    """The pipeline's stage-two checkpoint, or one per comparison-run folder (`--out`)."""
    return "stage2" if out is None else "stage2/" + Path(out).as_posix().strip("/").replace("/", "__")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lnlflow stage2", description="Train the stage-two method.")
    parser.add_argument("--method", help="override stage2.method (comparison runs)")
    parser.add_argument("--seed", type=int, help="override stage2.seed (comparison runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a stage2 parameter, e.g. --set meta.scope=head (YAML value)")
    parser.add_argument("--out", type=Path, help="write every output into this folder (comparison runs)")
    return parser.parse_args(argv)


def with_overrides(params, *, method: str | None, seed: int | None, settings: list[str]):
    """`params` with stage2 overrides applied (validated again, so a bad override is one clear error)."""
    stage2 = params.stage2.model_dump()
    if method is not None:
        stage2["method"] = method
    if seed is not None:
        stage2["seed"] = seed
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LnlError(f"--set {item!r}: expected KEY=VALUE, e.g. meta.scope=head")
        *parents, leaf = key.split(".")
        node = stage2
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise LnlError(f"--set {item!r}: stage2.{part} is not a section")
        node[leaf] = yaml.safe_load(value)
    if stage2 == params.stage2.model_dump():
        return params
    return validate_params({**params.model_dump(), "stage2": stage2}, source="params.yaml + command line")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = with_overrides(load_params(), method=args.method, seed=args.seed, settings=args.set)
    cfg = params.stage2
    outputs = Stage2Outputs.inside(args.out) if args.out else Stage2Outputs()
    check_writable(files=[outputs.log, outputs.metrics],
                   folders=[outputs.dir, *checkpoint_folders(checkpoint_name(args.out), params)])
    method_cls = get_method(cfg.method)
    init = resolve_init(cfg.init, method_cls, cfg.method)
    dist = distributed.setup(pick_device(params.runtime))  # torchrun: this rank's device and process group
    device = dist.device
    runtime = resolve_runtime(params.runtime, device)
    arrays, (y_noisy, verified) = load_prepared(), load_noisy()
    check_trusted_split(cfg.method, len(arrays["val_idx"]))
    info = read_json(paths.DATA_MANIFEST)
    dynamics = read_npz(paths.DYNAMICS, ("wrong_events", "train_idx"))
    if not np.array_equal(dynamics["train_idx"], arrays["train_idx"]):
        raise LnlError(f"{paths.DYNAMICS}: stage-one samples do not match the prepared training split; run dvc repro")
    seed_everything(stream_seed(cfg.seed, "stage2.global"))  # scratch and peer initialisation, dropout
    start = paths.LAST_MODEL if init == "base" and method_cls.warmup_end(params) == "last" else paths.BASE_MODEL
    model, checkpoint = load_model_checkpoint(start, device=device, checked=True)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    if init == "scratch":  # a fresh network of the same architecture, seeded by stage2.seed
        model = build_model(checkpoint["arch"]).to(device)
    model = runtime.prepare(model)
    splits = make_splits(arrays, y_noisy, info["n_classes"], device, verified,
                         on_device=params.runtime.data_on_device, crop_seed=stream_seed(cfg.seed, "stage2.crops"))
    optimizer = build_optimizer(model.parameters(), cfg)  # a two-network method adds its peer as a second group
    augment = make_augmenter(params.augment, splits, stream_seed(cfg.seed, "stage2.augment"))  # named streams
    ctx = MethodContext(  # under torchrun the method trains the DDP wrapper on views of its shard
        model=dist.wrap(model), splits=splits, params=params,
        augment=distributed.ShardedAugmenter(augment, dist) if dist.active else augment,
        wrong_events=dynamics["wrong_events"].astype(np.int64), device=device, optimizer=optimizer,
        arch=checkpoint["arch"], base_state=base_state, init=init, dist=dist,
        warmup_epochs=int(checkpoint["meta"].get("epoch", 0)),
    )
    method = method_cls(ctx)
    model = distributed.unwrap(method.eval_model)  # what is evaluated, selected and saved (an ensemble for DivideMix)
    scheduler = build_schedule(optimizer, cfg)  # after the method: the peer's group is scheduled too
    best = {"val_acc": -1.0, "epoch": 0, "state": None}
    selector = labelfree_selector(cfg.selection, splits, params.augment, cfg.seed)

    mine: list[torch.Tensor] = []  # the samples this rank trained in the current epoch

    def batch_loss(idx: torch.Tensor):
        mine.append(idx)
        return method.batch_loss(idx)

    def after_epoch(epoch: int, row: dict) -> dict:
        method.share(torch.cat(mine), dist)
        mine.clear()
        start, cpu_start = time.perf_counter(), time.process_time()
        extra = method.on_epoch_end(epoch)  # the method's own per-epoch work (mixture refits, DivideMix's division)
        extra["method_seconds"] = time.perf_counter() - start
        extra["method_cpu_seconds"] = time.process_time() - cpu_start
        if row["val_acc"] > best["val_acc"]:  # earliest epoch wins ties
            best.update(val_acc=row["val_acc"], epoch=epoch, state=snapshot(model))
        if selector is not None:
            extra["pool_clid"] = selector.update(epoch, model, splits.x_test)
        return extra

    resume = stage_checkpoint(
        checkpoint_name(args.out), params, sections=("augment", "runtime", "stage2", "noise"),
        inputs=(paths.PREPARED, paths.NOISY, paths.STAGE1), label="stage2",
        parts={"augment": augment, "method": method, "best": best, "selector": selector},
    )
    rows = train_epochs(
        model, splits, epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=optimizer, scheduler=scheduler,
        batch_loss=batch_loss, after_epoch=after_epoch, seed=stream_seed(cfg.seed, "stage2.batches"),
        label=f"stage2/{cfg.method}",
        runtime=runtime, checkpointer=resume, dist=dist, grad_clip=cfg.grad_clip,
    )
    if dist.is_main():  # one writer; the other ranks wait for it
        rule = selection_rule(len(splits.y_val), selector)
        write_outputs(method, model, checkpoint, rows, best, selector, cfg, init, outputs, resume, rule)
    dist.barrier()


def check_trusted_split(method: str, n_val: int) -> None:
    """A method whose meta loss reads labels needs a validation split (data.val_fraction > 0 or trusted rows)."""
    if method in TRUSTED_SPLIT_METHODS and n_val == 0:
        raise LnlError(f"stage2.method '{method}' needs a trusted validation split (its meta set), but the prepared "
                       "data has none (data.val_fraction is 0 and the source marks no trusted rows); set "
                       "data.val_fraction > 0, mark trusted rows, or choose another method")


def selection_rule(n_val: int, selector: LowestClidSelector | None) -> str:
    """How the selected model is chosen: best validation accuracy; without a validation split, the lowest pool
    CLID (stage2.selection) when enabled, else the last epoch."""
    if n_val:
        return "validation"
    return "labelfree" if selector is not None else "last"


def selected_model(rule: str, best: dict, selector, model, epochs: int) -> tuple[dict, int, str]:
    """(weights, epoch, selected_on) of the model `rule` selects."""
    if rule == "validation":
        return best["state"], best["epoch"], "val_acc"
    if rule == "labelfree":
        return selector.best_state, selector.epochs()[0], "lowest_pool_clid"
    return model.state_dict(), epochs, "last_epoch"


def write_outputs(method, model, checkpoint, rows, best, selector, cfg, init, outputs, resume, rule) -> None:
    """Models, noise scores, label-free selection, log and metrics (rank 0 only), then drop the resume checkpoint."""
    arch = method.eval_arch(checkpoint["arch"])
    state, epoch, selected_on = selected_model(rule, best, selector, model, cfg.epochs)
    scores = method.noise_scores()
    summary = {
        "method": cfg.method,
        "init": init,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "selection_rule": rule,  # validation | labelfree | last (no validation split)
        "selected_epoch": epoch,
        "val_acc_selected": best["val_acc"] if rule == "validation" else None,
        "val_acc_last": rows[-1]["val_acc"],
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])),
        # the method's cost: its batch loop plus its per-epoch work (evaluation and selection excluded)
        "train_seconds_per_epoch": float(np.mean([r["train_seconds"] + r["method_seconds"] for r in rows])),
        # the same in process CPU time (all threads): what the cost tables compare
        "train_cpu_seconds_per_epoch": float(np.mean([r["train_cpu_seconds"] + r["method_cpu_seconds"] for r in rows])),
    }
    with atomic_dir(outputs.dir) as out:
        inside = lambda path: out / path.relative_to(outputs.dir)  # noqa: E731
        save_model_checkpoint(inside(outputs.model_last), arch, model.state_dict(), epoch=cfg.epochs, method=cfg.method)
        save_model_checkpoint(inside(outputs.model_selected), arch, state, epoch=epoch,
                              method=cfg.method, selected_on=selected_on)
        if scores is not None:
            np.savez(inside(outputs.scores), p_label_wrong=np.asarray(scores, dtype=np.float64))
        if selector is not None:
            save_model_checkpoint(inside(outputs.model_labelfree), arch, selector.best_state,
                                  epoch=selector.epochs()[0], method=cfg.method, selected_on="lowest_pool_clid")
            np.savez(inside(outputs.labelfree), epochs=np.array(selector.epochs()),
                     ensemble_test_logits=selector.ensemble_logits().numpy())
        if outputs.log.is_relative_to(outputs.dir):  # a comparison run: everything in one folder
            write_tsv(inside(outputs.log), rows)
            write_json(inside(outputs.metrics), summary)
    if not outputs.log.is_relative_to(outputs.dir):
        write_tsv(outputs.log, rows)
        write_json(outputs.metrics, summary)
    resume.discard()  # the outputs exist: nothing left to resume
    chosen = f"best {best['val_acc']:.4f}" if rule == "validation" else f"selected by rule '{rule}'"
    print(f"stage2/{cfg.method}: last val_acc {rows[-1]['val_acc']:.4f}, {chosen} at epoch {epoch}")


if __name__ == "__main__":
    raise SystemExit(run_stage("stage2", main))
