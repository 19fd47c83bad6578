"""A throwaway single-node SLURM for the tests: munged, slurmctld and slurmd as child processes,
with their own key, config, state, sockets and logs in one folder, on free ports.

By hand: `python3 tests/slurm_cluster.py` starts one, prints the SLURM_CONF line to export, and
stops it on Ctrl-C.

The node has two fake GPUs (character devices made with mknod, which is what slurmd's gres/gpu
accepts), so that `--gres=gpu:1` tasks get their own CUDA_VISIBLE_DEVICES as on a real GPU node.
Client tools (sbatch, squeue, scontrol, scancel) find the cluster through SLURM_CONF.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

FAKE_GPUS = 2
CGROUP_MOUNT = "/sys/fs/cgroup"
# slurmd loads a cgroup plugin even with proctrack/linuxproc and task/none, and exits when
# CGROUP_MOUNT has no cgroup filesystem (a container or chroot without it); CgroupPlugin=disabled,
# which needs no cgroups, exists from Slurm 24.05 on.
CGROUP_DISABLED_SINCE = (24, 5)
TOOL_TIMEOUT = 60           # seconds for one SLURM client call (sinfo, squeue, scontrol)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_version():
    """(major, minor) of slurmd, from `slurmd -V` ("slurm 22.05.8" on Debian 12, "slurm-wlm 24.11.5" on 13)."""
    output = subprocess.run(["slurmd", "-V"], stdout=subprocess.PIPE, universal_newlines=True, check=True,
                            timeout=TOOL_TIMEOUT).stdout
    return tuple(int(part) for part in output.split()[1].split(".")[:2])


def why_slurmd_cannot_run():
    """None where this machine can run slurmd, else one line naming what is missing."""
    if slurm_version() >= CGROUP_DISABLED_SINCE or os.path.ismount(CGROUP_MOUNT):
        return None
    return ("%s is not mounted: slurmd %d.%02d cannot start without cgroups (Slurm >= 24.05 can, with "
            "CgroupPlugin=disabled)" % ((CGROUP_MOUNT,) + slurm_version()))


def node_resources():
    """(CPUs, memory in MB) of this machine as slurmd sees it, memory a little below the real one."""
    line = subprocess.run(["slurmd", "-C"], stdout=subprocess.PIPE, universal_newlines=True, check=True,
                          timeout=TOOL_TIMEOUT).stdout
    fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
    return int(fields["CPUs"]), int(int(fields["RealMemory"]) * 0.9)


SLURM_CONF = """\
ClusterName=pycaffe_fer_test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
DependencyParameters=kill_invalid_depend
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=600
KillWait=2
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:{gpus} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """start() brings the node to `idle`; stop() ends every daemon it started."""

    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.conf = os.path.join(self.root, "slurm.conf")
        self.processes = []

    @property
    def env(self):
        return dict(os.environ, SLURM_CONF=self.conf)

    def write_config(self):
        for folder in ("state", "spool", "gpus"):
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        munge = os.path.join(self.root, "munge")
        os.makedirs(munge, exist_ok=True)
        os.chmod(munge, 0o755)              # munged refuses a socket folder others can write to
        key = os.path.join(munge, "munge.key")
        subprocess.run(["mungekey", "--create", "--keyfile=" + key], check=True, timeout=TOOL_TIMEOUT)
        os.chmod(key, 0o600)
        for index in range(FAKE_GPUS):
            device = os.path.join(self.root, "gpus", "nvidia%d" % index)
            subprocess.run(["mknod", device, "c", "1", "3"], check=True, timeout=TOOL_TIMEOUT)   # gres/gpu wants a character device
        with open(os.path.join(self.root, "gres.conf"), "w") as handle:
            handle.write("NodeName=localhost Name=gpu File=%s/gpus/nvidia[0-%d]\n" % (self.root, FAKE_GPUS - 1))
        if slurm_version() >= CGROUP_DISABLED_SINCE:
            with open(os.path.join(self.root, "cgroup.conf"), "w") as handle:
                handle.write("CgroupPlugin=disabled\n")         # the same cluster with or without CGROUP_MOUNT
        cpus, memory = node_resources()
        with open(self.conf, "w") as handle:
            handle.write(SLURM_CONF.format(root=self.root, ctld_port=free_port(), d_port=free_port(),
                                           cpus=cpus, memory=memory, gpus=FAKE_GPUS))

    def spawn(self, command):
        log = open(os.path.join(self.root, os.path.basename(command[0]) + ".out"), "w")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def start(self, timeout=30):
        self.write_config()
        munge = os.path.join(self.root, "munge")
        self.spawn(["munged", "--foreground", "--socket=%s/munge.socket" % munge, "--key-file=%s/munge.key" % munge,
                    "--pid-file=%s/munged.pid" % munge, "--log-file=%s/munged.log" % munge,
                    "--seed-file=%s/munged.seed" % munge])
        self.wait_for(lambda: os.path.exists(os.path.join(munge, "munge.socket")), timeout, "munged")
        self.spawn(["slurmctld", "-D", "-i", "-f", self.conf])
        self.spawn(["slurmd", "-D", "-N", "localhost", "-f", self.conf])
        self.wait_for(lambda: self.node_state() == "idle", timeout, "an idle node")
        return self

    def node_state(self):
        result = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, universal_newlines=True, timeout=TOOL_TIMEOUT)
        return result.stdout.strip()

    def wait_for(self, condition, timeout, what):
        deadline = time.time() + timeout
        while not condition():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = {name: open(os.path.join(self.root, name)).read()[-2000:]
                        for name in ("slurmctld.log", "slurmd.log") if os.path.exists(os.path.join(self.root, name))}
                self.stop()
                raise RuntimeError("test SLURM: no %s (%s); logs: %s" % (
                    what, "exited: %s" % ", ".join(dead) if dead else "timeout", logs))
            time.sleep(0.1)

    def command(self, *args):
        """Run a SLURM client tool against this cluster; its stdout."""
        return subprocess.run(list(args), env=self.env, stdout=subprocess.PIPE, universal_newlines=True,
                              check=True, timeout=TOOL_TIMEOUT).stdout

    def stop(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


def slurm_tools_present():
    return all(shutil.which(tool) for tool in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch"))


def main():
    reason = why_slurmd_cannot_run()
    if reason:
        sys.exit("no test SLURM here: " + reason)
    root = tempfile.mkdtemp(prefix="pycaffe_fer_slurm-")
    os.chmod(root, 0o755)              # munged wants every folder above its socket open to all
    cluster = SlurmCluster(root).start()
    print("a one-node SLURM with %d fake GPUs is up; in another shell:\n\n    export SLURM_CONF=%s\n\n"
          "Ctrl-C stops it." % (FAKE_GPUS, cluster.conf), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
        shutil.rmtree(root)


if __name__ == "__main__":
    sys.exit(main())
