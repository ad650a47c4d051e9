#!/usr/bin/env bash
# lnlflow GPU check (issue 11): one prepared run, under 8 minutes on one H100/H200, that prints one table:
#   - CE epoch seconds, PreAct-ResNet-18 on 50,000 CIFAR-shaped images, bf16 + channels-last, without and with
#     torch.compile (goal ≤ 2 s);
#   - the stage-two epoch cost relative to CE of IDO, DivideMix, Co-teaching and the meta-learners (MetaLabelNet,
#     CLID-MU on both hosts, MW-Net) at their defaults and with the exact meta-gradient (`-exact`),
#     with each run's peak GPU memory (benchmarks/gpu_check.py says exactly what is timed).
#
# The GPU machine has PyTorch (CUDA), numpy and PyYAML but no pydantic, ruamel.yaml, DVC, MLflow or Prefect; the
# check imports only components.* and brings pydantic and ruamel.yaml as wheels. Exact steps:
#   1. here, once (PyPI; fills the git-ignored benchmarks/wheels/cp311 and cp312, ≈ 5 MB):
#        bash benchmarks/gpu_check.sh --fetch-wheels
#   2. on the device (the `run` tool; benchmarks/wheels is carried because it is ignored):
#        run(command="bash benchmarks/gpu_check.sh", carry=["benchmarks/wheels"], timeout_s=540)
#      The table is printed and also written to $OUT/gpu_check.md (it comes back with the reply).
#   CPU smoke test of the same code path with tiny sizes (< 2 min, measures nothing):
#        bash benchmarks/gpu_check.sh --smoke
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=benchmarks/wheels
PINS=(pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
      typing_extensions==4.16.0 ruamel.yaml==0.19.1 ruamel.yaml.clib==0.2.15)  # = requirements.lock

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi

case "${1:-}" in
  --fetch-wheels)
    grep -qxF "/$WHEELS/" .git/info/exclude 2>/dev/null || echo "/$WHEELS/" >> .git/info/exclude
    for ver in 3.11 3.12; do
      dest="$WHEELS/cp${ver/./}"
      mkdir -p "$dest"
      "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$ver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
        -d "$dest" "${PINS[@]}"
    done
    ls -l "$WHEELS"/cp3*/
    exit 0 ;;
  --smoke) MODE=(--smoke); LIMIT=115 ;;
  "") MODE=(); LIMIT=470 ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--smoke | --fetch-wheels]" >&2; exit 2 ;;
esac

if ! "$PY" -c "import pydantic, ruamel.yaml" 2>/dev/null; then
  tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  if ! ls "$WHEELS/$tag"/*.whl >/dev/null 2>&1; then
    echo "gpu_check: pydantic / ruamel.yaml are missing and $WHEELS/$tag has no wheels: run 'bash benchmarks/gpu_check.sh --fetch-wheels' here and carry $WHEELS" >&2
    exit 2
  fi
  site=$(mktemp -d /tmp/gpu_check_site.XXXX)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHEELS/$tag"/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi

export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
OUT_ARGS=()
if [ -n "${OUT:-}" ]; then OUT_ARGS=(--out "$OUT/gpu_check.md"); fi
exec timeout "$LIMIT" "$PY" benchmarks/gpu_check.py "${MODE[@]}" "${OUT_ARGS[@]}"
