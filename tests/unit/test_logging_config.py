"""Log records as JSON lines that carry the job they concern, from ``extra`` or from the bound context."""

from __future__ import annotations

import io
import json
import logging

from core.logging_config import JobIdFilter, JsonFormatter, TextFormatter, job_id_var


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobIdFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logging.{id(stream)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.INFO
    return logger, stream


def test_json_lines_carry_the_bound_job_and_request_fields():
    logger, stream = _logger(JsonFormatter("worker"))
    token = job_id_var.set("job_bound")
    try:
        logger.info("epoch %d done", 3)
        logger.info("explicit", extra={"job_id": "job_explicit", "route": "/v1/jobs/{job_id}", "status": 200})
    finally:
        job_id_var.reset(token)
    logger.info("no job")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "epoch 3 done" and first["job_id"] == "job_bound" and first["service"] == "worker" and first["level"] == "INFO"
    assert second["job_id"] == "job_explicit" and second["route"] == "/v1/jobs/{job_id}" and second["status"] == 200
    assert "job_id" not in third and third["time"].endswith("Z")


def test_exceptions_stay_inside_one_json_line_and_text_shows_the_job():
    logger, stream = _logger(JsonFormatter("api"))
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [line] = stream.getvalue().splitlines()
    assert "ValueError: boom" in json.loads(line)["exception"]
    text_logger, text = _logger(TextFormatter())
    text_logger.warning("slow", extra={"job_id": "job_7"})
    assert text.getvalue().rstrip().endswith("slow [job_7]")
