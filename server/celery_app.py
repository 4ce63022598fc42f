"""The Celery application: slow and scheduled work, on a SQLite broker by default, Redis in production."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from server.settings import Settings


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    app = Celery("telemed", broker=settings.resolved_broker_url,
                 include=["server.audit.tasks", "server.scheduling.tasks", "media.recording.tasks",
                          "qa_audit.tasks", "qa_audit.review_tasks"])
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "notifications": {"task": "server.scheduling.tasks.send_notifications", "schedule": 30.0},
            "no-shows": {"task": "server.scheduling.tasks.mark_no_shows", "schedule": 60.0},
            "recordings": {"task": "media.recording.tasks.sweep_recordings", "schedule": 60.0},
            # Daily, at night in Europe: crypto-erase recordings past TELEMED_RETENTION_RECORDING_DAYS.
            "recordings-retention": {"task": "media.recording.tasks.purge_recordings",
                                     "schedule": crontab(hour=2, minute=30)},
            "qa-sampling": {"task": "qa_audit.tasks.sample_consultations", "schedule": 120.0},
            "qa-top-up": {"task": "qa_audit.tasks.top_up_samples", "schedule": 86_400.0},
            "qa-assignment": {"task": "qa_audit.review_tasks.assign_reviews", "schedule": 120.0},
            "qa-reminders": {"task": "qa_audit.review_tasks.remind_overdue_reviews",
                             "schedule": crontab(hour=7, minute=0)},
            "audit-checkpoint": {
                "task": "server.audit.tasks.write_audit_checkpoint",
                "schedule": float(settings.audit_checkpoint_interval_seconds),
            },
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app


celery_app = create_celery()
