"""The Celery application.

Runs are long and must survive a killed worker: tasks are acknowledged late, rejected back to
the queue when the worker process is lost, and a worker takes one message at a time. Delivery
through Redis is at-least-once, so every task is idempotent (the run claim in ``shared.runs``).
Workers send task events so Flower shows every task live; run history is in our own tables.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from scheduler.schedule import beat_schedule
from shared.config import get_settings
from shared.logs import configure_logging


def create_celery() -> Celery:
    settings = get_settings()
    broker = settings.redis_url or "redis://127.0.0.1:6379/0"
    app = Celery("audiencesync", broker=broker, include=["worker.tasks", "worker.event_tasks"])
    app.conf.update(
        task_default_queue=settings.queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
        },
        worker_hijack_root_logger=False,
        timezone="UTC",
        beat_schedule=beat_schedule(settings),
        beat_scheduler="scheduler.beat:DatabaseScheduler",
    )
    return app


celery_app = create_celery()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_logs(**_kwargs: object) -> None:
    configure_logging(get_settings().log_level)
