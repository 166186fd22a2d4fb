"""moto_server with the few ECS behaviours nightshift's ecs tests need and plain moto lacks.

Run as `python moto_ext.py -H 127.0.0.1 -p PORT` (the arguments of moto_server).

Plain moto (5.2.5) never runs a container: every task exits 0, has no stopCode and writes
no CloudWatch logs. This wraps its ECS backend, in process, so that a test can ask for a
behaviour through the environment of its container override (the first container's):

  NS_FAKE_EXIT_CODE=N      the container's exit code when the task stops ("none": no exit
                           code, as for a container that never started). A non-zero or
                           missing code stops the task with stopCode EssentialContainerExited.
  NS_FAKE_LOG_LINES=a|b|c  lines written to the awslogs stream PREFIX/CONTAINER/TASK_ID of the
                           task definition's first container: none at RunTask (the stream does
                           not exist yet), then one line per DescribeTasks, the rest at STOPPED.
  NS_FAKE_HOLD=1           the task stays RUNNING until StopTask (for timeouts and re-attach).

StopTask records stopCode UserInitiated with the given reason, as ECS does. Everything
else is moto's: a task advances one state per DescribeTasks call until STOPPED.
"""

import sys
import time

from moto.ecs import models as ecs
from moto.logs.models import logs_backends
from moto.server import main

import warehouse_ext  # noqa: F401  (Athena and Redshift Data API behaviours, in process)

_original_init = ecs.Task.__init__
_original_advance = ecs.Task.advance
_original_describe = ecs.EC2ContainerServiceBackend.describe_tasks
_original_stop = ecs.EC2ContainerServiceBackend.stop_task


def _fake_env(task):
    for override in (task.overrides or {}).get("containerOverrides") or []:
        return {e["name"]: e["value"] for e in override.get("environment") or []}
    return {}


def _init(self, cluster, task_definition, *args, **kwargs):
    _original_init(self, cluster, task_definition, *args, **kwargs)
    env = _fake_env(self)
    self.ns_exit_code = env.get("NS_FAKE_EXIT_CODE", "0")
    self.ns_hold = env.get("NS_FAKE_HOLD") == "1"
    lines = env.get("NS_FAKE_LOG_LINES")
    self.ns_lines = lines.split("|") if lines else []
    self.ns_log = None
    options = ((task_definition.container_definitions[0].get("logConfiguration") or {})
               .get("options") or {})
    group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
    if self.ns_lines and group and prefix:
        name = task_definition.container_definitions[0].get("name")
        self.ns_log = (group, f"{prefix}/{name}/{self.id}")
    self.ns_described = 0
    self.ns_finished = False


def _advance(self):
    if not getattr(self, "ns_hold", False):
        _original_advance(self)


def _write_lines(task, count):
    if not task.ns_log or not task.ns_lines:
        return
    lines, task.ns_lines = task.ns_lines[:count], task.ns_lines[count:]
    group, stream = task.ns_log
    backend = logs_backends[task._account_id][task.region_name]
    if group not in backend.groups:
        backend.create_log_group(group, {})
    if stream not in backend.groups[group].streams:
        backend.create_log_stream(group, stream)
    now = int(time.time() * 1000)
    backend.put_log_events(group, stream, [{"timestamp": now, "message": line} for line in lines])


def _finish(task, reason="CannotStartContainerError: fake start failure"):
    """The container's end, once the task is STOPPED."""
    if task.ns_finished:
        return
    task.ns_finished = True
    code = None if task.ns_exit_code == "none" else int(task.ns_exit_code)
    for container in task.containers:
        container.last_status = "STOPPED"
        container.exitCode = code
        if code is None:
            container.reason = reason
    if not task.stopped_reason and code != 0:
        task.stop_code = "EssentialContainerExited"
        task.stopped_reason = "Essential container in task exited"
    task.desired_status = "STOPPED"
    _write_lines(task, len(task.ns_lines))


def _describe(self, cluster_str, tasks):
    found = _original_describe(self, cluster_str, tasks)
    for task in found:
        if not hasattr(task, "ns_described"):
            continue
        task.ns_described += 1
        if task.last_status == "STOPPED":
            _finish(task)
        elif task.ns_described > 1:
            _write_lines(task, 1)
    return found


def _stop(self, cluster_str, task_str, reason):
    task = _original_stop(self, cluster_str, task_str, reason)
    task.stop_code = "UserInitiated"
    if hasattr(task, "ns_finished"):
        task.ns_exit_code = "none"
        _finish(task, reason="Task stopped by StopTask")
    return task


ecs.Task.__init__ = _init
ecs.Task.advance = _advance
ecs.EC2ContainerServiceBackend.describe_tasks = _describe
ecs.EC2ContainerServiceBackend.stop_task = _stop

if __name__ == "__main__":
    main(sys.argv[1:])
