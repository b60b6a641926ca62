"""Owns the process group behind ``kandle.distribution``: joining the world that ``mpiexec`` started
(through mpi4py), the collectives the Rust loops call once or twice per step (with a timeout, so a
dead process makes the others fail instead of hang), and the current distribution.

The loops themselves (sharding each global batch, averaging gradients, identical updates) are in
the Rust core (``src/distributed.rs``); this module only hands them the group.
"""

import atexit
import contextlib
import os
import sys
import time
import warnings

# Environment variables through which the MPI launchers tell a process how many were started.
_LAUNCH_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

_DEFAULT_TIMEOUT = 300.0

_state = {"group": None, "distribution": None}


def _launched_size():
    """How many processes the launcher says it started (1 when not started by mpiexec)."""
    for key in _LAUNCH_SIZE_VARIABLES:
        value = os.environ.get(key)
        if value and value.isdigit():
            return int(value)
    return 1


def _timeout():
    value = os.environ.get("KANDLE_COLLECTIVE_TIMEOUT")
    if value is None:
        return _DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"KANDLE_COLLECTIVE_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"KANDLE_COLLECTIVE_TIMEOUT must be positive, got {value!r}")
    return seconds


class _Group:
    """The MPI world as the core's loops use it: ``rank``, ``size`` and in-place ``allreduce``
    (sum) / ``bcast`` (from process 0) of float32/float64 arrays, each with a deadline."""

    def __init__(self, comm, timeout):
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.timeout = timeout
        self.broken = False
        self._pending = []

    def allreduce(self, buffer):
        from mpi4py import MPI

        self._wait(self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM), "an allreduce", buffer)

    def start_allreduce(self, buffer):
        """Starts an in-place sum of `buffer`; `finish(request)` waits for it, `progress()` moves
        every started one on (the training step calls it between layers)."""
        from mpi4py import MPI

        request = (self.comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM), buffer)
        self._pending.append(request)
        return request

    def progress(self):
        if self._pending:
            from mpi4py import MPI

            MPI.Request.Testall([r for r, _ in self._pending])

    def finish(self, request):
        self._pending.remove(request)
        self._wait(request[0], "an allreduce", request[1])

    def bcast(self, buffer):
        self._wait(self.comm.Ibcast(buffer, root=0), "a broadcast", buffer)

    def _wait(self, request, what, buffer):
        if self.broken:
            raise RuntimeError("kandle.distribution: an earlier collective of this process failed; the process "
                               "group cannot be used any more (restart every process)")
        deadline = time.monotonic() + self.timeout
        while not request.Test():
            if time.monotonic() > deadline:
                self.broken = True
                raise RuntimeError(
                    f"kandle.distribution: process {self.rank} of {self.size} waited {self.timeout:g} s for the "
                    f"others in {what} of {buffer.size} values and gave up: another process has died, hangs, "
                    "or runs different code (KANDLE_COLLECTIVE_TIMEOUT sets the limit)")


class _Alone:
    """The world of one process, without MPI (mpi4py not installed and no launcher)."""

    rank, size, broken = 0, 1, False


def _abort_if_broken():
    """At exit after a failed collective: MPI's normal shutdown would wait for the missing process,
    so end the whole job instead (mpiexec then stops every process)."""
    group = _state["group"]
    if group is not None and group.broken:
        sys.stderr.flush()
        group.comm.Abort(1)


def initialize(job_addresses=None, num_processes=None, process_id=None, **kwargs):
    """Joins the world of processes that ``mpiexec`` started (alone: a world of one).

    Keras 3's signature; with MPI the launcher decides the processes and their hosts
    (``mpiexec -n 4 -hosts a,b python train.py``), so ``job_addresses`` is not needed and
    ``num_processes`` / ``process_id``, when given, must agree with it. Call it before building
    models: it also sizes kandle's thread pool to the cores this process shares with others on
    its machine (unless ``RAYON_NUM_THREADS`` is set).
    """
    if kwargs:
        raise TypeError(f"initialize() got unexpected keyword argument(s): {sorted(kwargs)}")
    if job_addresses is not None:
        raise ValueError("kandle.distribution.initialize(job_addresses=...) is not needed: the processes and their "
                         "hosts come from the MPI launcher (mpiexec -n N -hosts host1,host2 python script.py)")
    try:
        from mpi4py import MPI
    except ImportError as exc:
        if _launched_size() == 1 and num_processes in (None, 1) and process_id in (None, 0):
            _state["group"] = _state["group"] or _Alone()
            return None
        raise ImportError("kandle.distribution needs mpi4py and an MPI library: pip install \"kandle[distributed]\" "
                          f"(importing mpi4py failed: {exc})") from exc
    comm = MPI.COMM_WORLD
    if num_processes is not None and int(num_processes) != comm.Get_size():
        raise ValueError(f"initialize(num_processes={num_processes}) but mpiexec started {comm.Get_size()} process(es)")
    if process_id is not None and int(process_id) != comm.Get_rank():
        raise ValueError(f"initialize(process_id={process_id}) but MPI gives this process rank {comm.Get_rank()}")
    if _state["group"] is None:
        _size_thread_pool(comm)
        _state["group"] = _Group(comm, _timeout())
        atexit.register(_abort_if_broken)
    return None


def _size_thread_pool(comm):
    from mpi4py import MPI

    from kandle import _kandle

    local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
    if local <= 1 or "RAYON_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = max(1, cores // local)
    os.environ["RAYON_NUM_THREADS"] = str(wanted)
    if _kandle.num_threads() != wanted:
        warnings.warn(f"kandle.distribution.initialize(): kandle's thread pool already runs {_kandle.num_threads()} "
                      f"threads, but {local} processes share this machine's {cores} cores ({wanted} each would fit): "
                      "call initialize() before building or running any model", stacklevel=3)


def _group():
    group = _state["group"]
    if group is None:
        if _launched_size() > 1:
            raise ValueError(f"This process is one of {_launched_size()} that mpiexec started, but "
                             "kandle.distribution.initialize() was not called: call it at the start of the script, "
                             "before DataParallel()")
        initialize()
        group = _state["group"]
    return group


def list_devices(device_type=None):
    """The devices of the world: one ``"cpu:<rank>"`` per process (kandle computes on CPUs)."""
    if device_type is not None and str(device_type).lower() != "cpu":
        return []
    if _state["group"] is None and _launched_size() == 1:
        return ["cpu:0"]
    return [f"cpu:{i}" for i in range(_group().size)]


class DeviceMesh:
    """Keras 3's ``DeviceMesh(shape, axis_names, devices=None)``; kandle uses one-axis meshes of
    every process (data parallelism)."""

    def __init__(self, shape, axis_names, devices=None):
        shape, axis_names = tuple(shape), list(axis_names)
        if len(shape) != len(axis_names):
            raise ValueError(f"DeviceMesh: shape {shape} and axis_names {axis_names} must have the same length")
        devices = list_devices() if devices is None else list(devices)
        size = 1
        for dim in shape:
            size *= int(dim)
        if size != len(devices):
            raise ValueError(f"DeviceMesh: shape {shape} holds {size} devices, but {len(devices)} were given")
        self.shape, self.axis_names, self.devices = shape, axis_names, devices


class DataParallel:
    """Keras 3's data parallelism: every later ``fit`` / ``evaluate`` / ``predict`` splits each
    global batch (``batch_size``) among the processes, averages the gradients over them before the
    step, and keeps every process's weights identical (process 0's at the start).

    Every process must run the same script on the same data: each takes its rows of every batch.
    Only process 0 prints the progress bar and writes files from callbacks.
    """

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True, **kwargs):
        if kwargs:
            raise TypeError(f"DataParallel() got unexpected keyword argument(s): {sorted(kwargs)}")
        group = _group()
        world = [f"cpu:{i}" for i in range(group.size)]
        if device_mesh is not None:
            if not isinstance(device_mesh, DeviceMesh):
                raise TypeError(f"DataParallel(device_mesh=...) expects a DeviceMesh, got {type(device_mesh).__name__}")
            if len(device_mesh.shape) != 1:
                raise ValueError("kandle does not implement multi-axis device meshes yet (DataParallel takes a 1-D mesh)")
            devices = device_mesh.devices
        if devices is not None and sorted(map(str, devices)) != sorted(world):
            raise ValueError(f"kandle's DataParallel uses every process of the world ({world}); got devices "
                             f"{list(devices)}: start as many processes as devices with mpiexec -n")
        self.device_mesh = device_mesh or DeviceMesh((group.size,), ["batch"], world)
        self.batch_dim_name = self.device_mesh.axis_names[0]
        self.auto_shard_dataset = auto_shard_dataset
        self._group = group

    @contextlib.contextmanager
    def scope(self):
        """``with distribution.scope():`` makes this the distribution inside the block."""
        previous = _state["distribution"]
        set_distribution(self)
        try:
            yield self
        finally:
            _state["distribution"] = previous

    def distribute_dataset(self, dataset):
        """The dataset as is: kandle's loops take each process's rows of every batch themselves."""
        return dataset

    def __repr__(self):
        return f"<DataParallel processes={self._group.size} rank={self._group.rank}>"


def set_distribution(value):
    """Makes ``value`` (a ``DataParallel``, or None for none) the distribution of every later call."""
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError(f"set_distribution expects a DataParallel or None, got {type(value).__name__} "
                        "(kandle does not implement ModelParallel yet)")
    _state["distribution"] = value


def distribution():
    """The current distribution (None when none is set)."""
    return _state["distribution"]


def _world():
    """The group the core's loops run over: the current distribution's, or None (this process alone)."""
    current = _state["distribution"]
    if current is None or current._group.size == 1:
        return None
    return current._group


def _is_chief():
    """Whether this process prints and writes files: always, unless it is a data-parallel process
    other than process 0."""
    group = _world()
    return group is None or group.rank == 0
