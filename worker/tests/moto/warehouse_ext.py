"""Athena and Redshift Data API behaviours nightshift's warehouse tests need and moto lacks.

Imported by moto_ext.py, in process. A test asks for a behaviour through markers in the
query text (in a SQL comment):

  NS_FAIL:reason   the query / statement fails with `reason` (Athena: StateChangeReason and
                   AthenaError, not retryable; Redshift: DescribeStatement's Error)
  NS_HOLD          it stays RUNNING (Athena) / STARTED (Redshift) until cancelled
  NS_SLOW          it runs for its first 8 status reads, then succeeds (for re-attach tests)

Athena: a repeated ClientRequestToken returns the first query's id (as Athena does); a
finished query reports DataScannedInBytes 2048 and EngineExecutionTimeInMillis 150.
StopQueryExecution (moto's) leaves it CANCELLED.

Redshift Data API: ExecuteStatement and BatchExecuteStatement (which moto lacks) keep
workgroup, statement name, client token (a repeated one returns the first statement) and
parameters, and ListStatements (which moto lacks) lists them all; a statement is STARTED at first and FINISHED from its second DescribeStatement
on (unless held or failed); CancelStatement (moto's) leaves it ABORTED. Times are answered
as epoch seconds, which the AWS SDKs expect of this JSON protocol. GetStatementResult
(moto's fixed three rows) also answers a batch's sub-statement ids (`ID:N`).
"""

import json
import re
import time

from moto.athena import models as athena
from moto.athena import responses as athena_responses
from moto.redshiftdata import models as rsd
from moto.redshiftdata import responses as rsd_responses

_FAIL = re.compile(r"NS_FAIL:\s*([^\n]*)")


SLOW_READS = 8


def _marks(query):
    fail = _FAIL.search(query or "")
    return (fail.group(1).strip() if fail else None), "NS_HOLD" in (query or "")


def _slow(obj, query):
    """True while an NS_SLOW query is still in its first status reads."""
    if "NS_SLOW" not in (query or ""):
        return False
    obj.ns_reads = getattr(obj, "ns_reads", 0) + 1
    return obj.ns_reads <= SLOW_READS


# ---- Athena ------------------------------------------------------------------------------

_athena_tokens = {}
_original_start = athena_responses.AthenaResponse.start_query_execution
_original_get = athena_responses.AthenaResponse.get_query_execution
_original_advance = athena.Execution.advance


def _start(self):
    token = self._get_param("ClientRequestToken")
    if token and token in _athena_tokens:
        return json.dumps({"QueryExecutionId": _athena_tokens[token]})
    answer = _original_start(self)
    if token and isinstance(answer, str):
        _athena_tokens[token] = json.loads(answer)["QueryExecutionId"]
    return answer


_original_status = athena.Execution.status


def _get_status(self):
    # moto's ManagedState moves a query on whenever its status is read: once this
    # extension decided a state (held, failed, cancelled), that state stays.
    fixed = getattr(self, "ns_state", None)
    return fixed if fixed is not None else _original_status.fget(self)


def _set_status(self, value):
    self.ns_state = value


def _advance(self):
    fail, hold = _marks(self.query)
    if getattr(self, "ns_state", None) in ("CANCELLED", "FAILED", "SUCCEEDED"):
        return
    if fail is not None:
        self.ns_state = "FAILED"
        self.ns_reason = fail
    elif hold or _slow(self, self.query):
        self.ns_state = "RUNNING"
    else:
        self.ns_state = "SUCCEEDED"


def _get(self):
    answer = json.loads(_original_get(self))
    exec_id = self._get_param("QueryExecutionId")
    execution = self.athena_backend.executions[exec_id]
    status = answer["QueryExecution"]["Status"]
    reason = getattr(execution, "ns_reason", None)
    if reason is not None:
        status["StateChangeReason"] = reason
        status["AthenaError"] = {
            "ErrorCategory": 2,
            "ErrorType": 1006,
            "Retryable": False,
            "ErrorMessage": reason,
        }
    if execution.status == "SUCCEEDED":
        stats = answer["QueryExecution"]["Statistics"]
        stats["DataScannedInBytes"] = 2048
        stats["EngineExecutionTimeInMillis"] = 150
    return json.dumps(answer)


athena_responses.AthenaResponse.start_query_execution = _start
athena_responses.AthenaResponse.get_query_execution = _get
athena.Execution.advance = _advance
athena.Execution.status = property(_get_status, _set_status)


# ---- Redshift Data API -------------------------------------------------------------------

_rsd_tokens = {}


def _new_statement(backend, params, sql, sub_statements=None):
    token = params.get("ClientToken")
    if token and token in _rsd_tokens:
        return backend.statements[_rsd_tokens[token]]
    statement = rsd.Statement(
        cluster_identifier=params.get("ClusterIdentifier"),
        database=params.get("Database"),
        db_user=params.get("DbUser"),
        query_parameters=params.get("Parameters"),
        query_string=sql,
        secret_arn=params.get("SecretArn"),
    )
    statement.ns_workgroup = params.get("WorkgroupName")
    statement.ns_name = params.get("StatementName")
    statement.ns_described = 0
    statement.ns_error = None
    statement.ns_subs = sub_statements or []
    statement.ns_created = time.time()
    backend.statements[statement.id] = statement
    if token:
        _rsd_tokens[token] = statement.id
    return statement


def _submitted(statement):
    return json.dumps(
        {
            "Id": statement.id,
            "CreatedAt": statement.ns_created,
            "Database": statement.database,
            "ClusterIdentifier": statement.cluster_identifier,
            "WorkgroupName": statement.ns_workgroup,
            "DbUser": statement.db_user,
            "SecretArn": statement.secret_arn,
        }
    )


def _execute(self):
    params = json.loads(self.body)
    statement = _new_statement(self.redshiftdata_backend, params, params.get("Sql"))
    return 200, {}, _submitted(statement)


def _batch(self):
    params = json.loads(self.body)
    sqls = params.get("Sqls") or []
    statement = _new_statement(self.redshiftdata_backend, params, ";\n".join(sqls), sqls)
    return 200, {}, _submitted(statement)


def _describe(self):
    statement_id = self._get_param("Id")
    statement = self.redshiftdata_backend.describe_statement(statement_id=statement_id)
    fail, hold = _marks(statement.query_string)
    if getattr(statement, "ns_described", None) is not None:
        statement.ns_described += 1
        slow = _slow(statement, statement.query_string)
        if statement.status == "STARTED" and statement.ns_described >= 2 and not slow:
            if fail is not None:
                statement.status = "FAILED"
                statement.ns_error = fail
            elif not hold:
                statement.status = "FINISHED"
                statement.has_result_set = True
                statement.result_rows = 3
    answer = {
        "Id": statement.id,
        "Status": statement.status,
        "CreatedAt": getattr(statement, "ns_created", time.time()),
        "UpdatedAt": time.time(),
        "Database": statement.database,
        "ClusterIdentifier": statement.cluster_identifier,
        "WorkgroupName": getattr(statement, "ns_workgroup", None),
        "DbUser": statement.db_user,
        "SecretArn": statement.secret_arn,
        "QueryString": statement.query_string,
        "QueryParameters": statement.query_parameters,
        "HasResultSet": statement.has_result_set,
        "ResultRows": statement.result_rows,
        "Duration": 1000000,
    }
    if getattr(statement, "ns_error", None):
        answer["Error"] = statement.ns_error
    subs = getattr(statement, "ns_subs", [])
    if subs:
        answer["SubStatements"] = [
            {
                "Id": f"{statement.id}:{n + 1}",
                "QueryString": sql,
                "Status": "FINISHED" if statement.status == "FINISHED" else "SUBMITTED",
                "HasResultSet": statement.status == "FINISHED",
            }
            for n, sql in enumerate(subs)
        ]
    answer = {k: v for k, v in answer.items() if v is not None}
    return 200, {}, json.dumps(answer)


def _list(self):
    statements = self.redshiftdata_backend.statements.values()
    answer = [
        {
            "Id": s.id,
            "Status": s.status,
            "QueryString": s.query_string,
            "StatementName": getattr(s, "ns_name", None),
            "CreatedAt": getattr(s, "ns_created", time.time()),
            "UpdatedAt": time.time(),
        }
        for s in statements
    ]
    return 200, {}, json.dumps({"Statements": answer})


_original_result = rsd.RedshiftDataAPIServiceBackend.get_statement_result


def _result(self, statement_id):
    return _original_result(self, statement_id.split(":")[0])


def _result_response(self):
    """moto's fixed rows, with `nullable` as the number the API defines (moto sends a
    boolean, which the AWS SDKs reject) and TotalNumRows."""
    result = dict(self.redshiftdata_backend.get_statement_result(statement_id=self._get_param("Id")))
    columns = []
    for column in result["ColumnMetadata"]:
        column = {k: v for k, v in column.items() if v is not None}
        column["nullable"] = int(bool(column.get("nullable", 0)))
        columns.append(column)
    answer = {
        "ColumnMetadata": columns,
        "Records": result["Records"],
        "TotalNumRows": result["TotalNumberRows"],
    }
    return 200, {}, json.dumps(answer)


rsd_responses.RedshiftDataAPIServiceResponse.execute_statement = _execute
rsd_responses.RedshiftDataAPIServiceResponse.batch_execute_statement = _batch
rsd_responses.RedshiftDataAPIServiceResponse.describe_statement = _describe
rsd_responses.RedshiftDataAPIServiceResponse.list_statements = _list
rsd_responses.RedshiftDataAPIServiceResponse.get_statement_result = _result_response
rsd.RedshiftDataAPIServiceBackend.get_statement_result = _result
