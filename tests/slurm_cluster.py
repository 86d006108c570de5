"""A real one-node SLURM cluster on this machine, for the tests: Debian's slurm-wlm and munge
(installed when missing), daemons started with a configuration this writes, and stopped afterwards.
No accounting daemon: job states come from squeue, which keeps finished jobs for MinJobAge seconds.

The configuration goes to the default path, /etc/slurm/slurm.conf, not to a scratch file named by
SLURM_CONF: the Snakemake SLURM jobstep plugin removes every SLURM_* variable but the job's identity
before its nested `srun`, which then finds no configuration. A slurm.conf this module did not write is
never touched: the cluster is then reported unavailable."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by safetygrid's tests/slurm_cluster.py"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the reason says which step failed."""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


def ensure_installed() -> None:
    if all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SlurmUnavailable("slurm-wlm and munge are not installed, and installing them needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "slurm-wlm", "munge"]
    proc = _run(install, env=env)
    if proc.returncode != 0:  # stale package lists: refresh once
        _run(["apt-get", "update", "-q"], env=env)
        proc = _run(install, env=env)
    if proc.returncode != 0:
        raise SlurmUnavailable(f"apt-get install slurm-wlm munge failed: {proc.stderr[-500:]}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


def write_config(directory: Path) -> Path:
    """slurm.conf for one node (this machine, all its CPUs, 90 % of its memory) and one partition;
    state, spool and logs in `directory`."""
    if SLURM_CONF.exists() and MARKER not in SLURM_CONF.read_text():
        raise SlurmUnavailable(f"{SLURM_CONF} exists and belongs to another cluster; the tests leave it alone")
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    conf = SLURM_CONF
    conf.write_text(f"""\
{MARKER}
ClusterName=safetygrid-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
StateSaveLocation={directory}/state
SlurmdSpoolDir={directory}/spool
SlurmctldPidFile={directory}/slurmctld.pid
SlurmdPidFile={directory}/slurmd.pid
SlurmctldLogFile={directory}/slurmctld.log
SlurmdLogFile={directory}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=86400
ReturnToService=2
NodeName={host} CPUs={os.cpu_count()} RealMemory={int(_memory_mb() * 0.9)} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _munge_works() -> bool:
    if not shutil.which("munge"):
        return False
    encode = subprocess.run(["munge", "-n"], capture_output=True)
    return encode.returncode == 0 and subprocess.run(["unmunge"], input=encode.stdout, capture_output=True).returncode == 0


def _start_munged() -> int | None:
    """Start munged as the munge user unless one already answers; the pid of the one started."""
    if _munge_works():
        return None
    for directory in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "munge", "munge")
    proc = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
    if proc.returncode != 0 or not _munge_works():
        raise SlurmUnavailable(f"munged did not start: {proc.stderr.strip()[-300:]}")
    return int(Path("/run/munge/munged.pid").read_text())


def _wait_idle(env: dict[str, str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:
        proc = _run(["sinfo", "-h", "-o", "%T"], env=env)
        state = proc.stdout.strip() or proc.stderr.strip()
        if state == "idle":
            return
        time.sleep(1)
    raise SlurmUnavailable(f"the node did not come up idle within {seconds:.0f} s (last: {state!r})")


def _stop(pid_file: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pid_file.read_text()), 15)


@contextlib.contextmanager
def one_node_cluster(directory: Path) -> Iterator[dict[str, str]]:
    """Yield the environment in which sbatch/squeue talk to a fresh cluster; stop every daemon this
    started, and remove its slurm.conf, when done."""
    ensure_installed()
    conf = write_config(directory)
    env = {key: value for key, value in os.environ.items() if key != "SLURM_CONF"}
    munged = _start_munged()
    try:
        for daemon in ("slurmctld", "slurmd"):
            proc = _run([f"/usr/sbin/{daemon}"], env=env)
            if proc.returncode != 0:
                log = directory / f"{daemon}.log"
                tail = log.read_text()[-500:] if log.exists() else proc.stderr[-500:]
                raise SlurmUnavailable(f"{daemon} did not start: {tail}")
        _wait_idle(env)
        yield env
    finally:
        _run(["scontrol", "shutdown"], env=env)
        for name in ("slurmd", "slurmctld"):
            _stop(directory / f"{name}.pid")
        if munged is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(munged, 15)
        conf.unlink(missing_ok=True)


def jobs(env: dict[str, str]) -> list[dict[str, str]]:
    """Every job the cluster has seen (finished ones are kept for MinJobAge): id, state, comment."""
    proc = _run(["squeue", "--states=all", "-h", "-o", "%i|%T|%k"], env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"squeue failed: {proc.stderr}")
    rows = [line.split("|", 2) for line in proc.stdout.splitlines() if line.strip()]
    return [{"id": r[0], "state": r[1], "comment": r[2]} for r in rows]
