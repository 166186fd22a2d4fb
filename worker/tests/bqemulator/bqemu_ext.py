"""bqemulator with the behaviours nightshift's bigquery tests need and the emulator lacks.

Run as `python bqemu_ext.py start --rest-port N --grpc-port M --project p1` (the same
arguments as `bqemulator`): it wraps the emulator's FastAPI app, in process, with a
middleware. The emulator still runs every query; the middleware only

  records every jobs.insert request body (GET /nsext/submissions), so a test counts
  submissions and sees what was sent (labels, parameters) exactly;
  records every jobs.cancel (GET /nsext/cancels);
  holds a job whose query text contains NS_HOLD as RUNNING (jobs.get) until it is
  cancelled; a cancelled job is then DONE with BigQuery's `stopped` error result;
  answers an NS_SLOW job as RUNNING for its first 8 jobs.get reads (re-attach tests);
  answers a repeated jobs.insert of an existing job id with 409 duplicate, as BigQuery
  does (the emulator itself answers 200 and the existing job).
"""

import json
import re
import sys

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import bqemulator.server as server
from bqemulator.cli import main

SLOW_READS = 8

_submissions = []
_cancels = []
_held = {}  # job id -> "RUNNING" | "CANCELLED"
_slow = {}  # job id -> reads so far
_known = set()

_INSERT = re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/?$")
_GET = re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/([^/]+)$")
_CANCEL = re.compile(r"^/bigquery/v2/projects/([^/]+)/jobs/([^/]+)/cancel$")
_RESULTS = re.compile(r"^/bigquery/v2/projects/([^/]+)/queries/([^/]+)$")


async def _json_body(response):
    body = b""
    async for chunk in response.body_iterator:
        body += chunk
    return body, (json.loads(body) if body else None)


def _stopped(job):
    job["status"] = {
        "state": "DONE",
        "errorResult": {
            "reason": "stopped",
            "message": "Job execution was cancelled: User requested cancellation",
        },
        "errors": [
            {
                "reason": "stopped",
                "message": "Job execution was cancelled: User requested cancellation",
            }
        ],
    }
    return job


async def _middleware(request: Request, call_next):
    path = request.url.path
    if path == "/nsext/submissions":
        return JSONResponse(_submissions)
    if path == "/nsext/cancels":
        return JSONResponse(_cancels)

    if request.method == "POST" and _INSERT.match(path):
        raw = await request.body()
        body = json.loads(raw or b"{}")
        _submissions.append(body)
        job_id = (body.get("jobReference") or {}).get("jobId")
        if job_id and job_id in _known:
            return JSONResponse(
                {
                    "error": {
                        "code": 409,
                        "message": f"Already Exists: Job {job_id}",
                        "status": "ALREADY_EXISTS",
                        "errors": [{"reason": "duplicate", "message": f"Already Exists: Job {job_id}"}],
                    }
                },
                status_code=409,
            )
        response = await call_next(request)
        body_bytes, job = await _json_body(response)
        if response.status_code == 200 and isinstance(job, dict):
            job_id = job.get("jobReference", {}).get("jobId", job_id)
            _known.add(job_id)
            query = (body.get("configuration") or {}).get("query", {}).get("query", "")
            if "NS_HOLD" in query:
                _held[job_id] = "RUNNING"
                job["status"] = {"state": "RUNNING"}
            elif "NS_SLOW" in query:
                _slow[job_id] = 0
                job["status"] = {"state": "RUNNING"}
            return JSONResponse(job, status_code=200)
        return Response(body_bytes, status_code=response.status_code, media_type="application/json")

    m = _CANCEL.match(path) if request.method == "POST" else None
    if m:
        job_id = m.group(2)
        _cancels.append(job_id)
        response = await call_next(request)
        body_bytes, answer = await _json_body(response)
        if job_id in _held and isinstance(answer, dict):
            _held[job_id] = "CANCELLED"
            answer["job"] = _stopped(answer.get("job") or {})
            return JSONResponse(answer, status_code=response.status_code)
        return Response(body_bytes, status_code=response.status_code, media_type="application/json")

    m = _GET.match(path) if request.method == "GET" else None
    if m and (m.group(2) in _held or m.group(2) in _slow):
        job_id = m.group(2)
        response = await call_next(request)
        body_bytes, job = await _json_body(response)
        if response.status_code != 200 or not isinstance(job, dict):
            return Response(body_bytes, status_code=response.status_code, media_type="application/json")
        if _held.get(job_id) == "RUNNING":
            job["status"] = {"state": "RUNNING"}
        elif _held.get(job_id) == "CANCELLED":
            _stopped(job)
        elif job_id in _slow:
            _slow[job_id] += 1
            if _slow[job_id] <= SLOW_READS:
                job["status"] = {"state": "RUNNING"}
        return JSONResponse(job)

    return await call_next(request)


_create_app = server.create_app


def _create_app_with_extension(context):
    app = _create_app(context)
    app.middleware("http")(_middleware)
    return app


server.create_app = _create_app_with_extension

if __name__ == "__main__":
    sys.exit(main())
