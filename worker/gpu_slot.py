"""Give this worker process one GPU of its host to itself, then exec the worker command.

    python -m worker.gpu_slot --lock-dir /run/farm-gpu-slots -- celery -A worker.app worker ...

Why: `docker compose up --scale worker=N` starts N identical containers, and Docker turns a reservation of
`count: 1` GPU into "device 0" for every one of them, so on a multi-GPU host they would all share GPU 0.
Instead each replica sees the host's GPUs and takes the first free one under an exclusive lock on a file in a
directory the replicas share (a named volume). The lock belongs to the exec'd worker and is released by the
kernel when it exits, however it exits, so a restarted replica takes the slot back. With more replicas than
GPUs the extra ones stop with a message instead of doubling up on a GPU.

Candidates are the entries of CUDA_VISIBLE_DEVICES when it is set (indices or UUIDs), else one index per
/dev/nvidiaN device node. No torch here: CUDA must start only in the Celery pool child.
"""

import argparse
import fcntl
import os
import re
import sys
from pathlib import Path

DEVICE_DIR = Path("/dev")
GPU_DEVICE_NODE = re.compile(r"nvidia(\d+)")  # not nvidiactl, nvidia-uvm, nvidia-modeset
# CUDA numbers devices fastest-first unless told otherwise; PCI order is stable and matches nvidia-smi.
CUDA_DEVICE_ORDER = "PCI_BUS_ID"
EXIT_NO_GPU = 3


class NoFreeGpu(Exception):
    """Every candidate GPU is held by another worker process on this host (or there is none)."""


def candidate_gpus(environ: dict[str, str], device_dir: Path = DEVICE_DIR) -> list[str]:
    """The GPUs this process may take: CUDA_VISIBLE_DEVICES entries, else 0 … n-1 for n device nodes."""
    listed = [entry.strip() for entry in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if entry.strip()]
    if listed:
        return listed
    nodes = [path for path in device_dir.glob("nvidia*") if GPU_DEVICE_NODE.fullmatch(path.name)]
    return [str(index) for index in range(len(nodes))]


def lock_name(gpu: str) -> str:
    """A file name for a GPU index or UUID (GPU-6f1c…, MIG-…): only safe characters."""
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu) + ".lock"


def take_gpu(candidates: list[str], lock_dir: Path) -> tuple[str, int]:
    """(gpu, fd): the first candidate whose lock this process got; the lock lives as long as ``fd``."""
    if not candidates:
        raise NoFreeGpu("no GPU is visible to this process (no CUDA_VISIBLE_DEVICES, no /dev/nvidiaN)")
    lock_dir.mkdir(parents=True, exist_ok=True)
    for gpu in candidates:
        fd = os.open(lock_dir / lock_name(gpu), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for an operator looking at the volume
        return gpu, fd
    raise NoFreeGpu(
        f"all {len(candidates)} GPU(s) of this host ({', '.join(candidates)}) are taken by other worker "
        f"processes (locks in {lock_dir}): run at most {len(candidates)} worker replicas per host"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worker.gpu_slot", description=__doc__.splitlines()[0])
    parser.add_argument("--lock-dir", type=Path, required=True, help="directory shared by the host's workers")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the worker command to exec")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the worker command after --")
    try:
        gpu, fd = take_gpu(candidate_gpus(dict(os.environ)), args.lock_dir)
    except NoFreeGpu as error:
        print(f"worker.gpu_slot: {error}", file=sys.stderr)  # noqa: T201 - runs before logging exists
        sys.exit(EXIT_NO_GPU)
    os.set_inheritable(fd, True)  # the worker keeps the lock (and the GPU) for its whole life
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    os.environ["CUDA_DEVICE_ORDER"] = CUDA_DEVICE_ORDER
    print(f"worker.gpu_slot: this worker uses GPU {gpu}", file=sys.stderr, flush=True)  # noqa: T201
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
