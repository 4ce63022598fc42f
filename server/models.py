"""Every domain's tables in one metadata, for migrations and `db check`."""

from consent import models as consent_models
from media.recording import models as recording_models
from qa_audit import feedback_models as qa_feedback_models
from qa_audit import models as qa_models
from server.audit import models as audit_models
from server.auth import models as auth_models
from server.db.base import Base
from server.people import models as people_models
from server.records import models as records_models  # noqa: F401  # imported for its tables, like the others
from server.scheduling import models as scheduling_models
from signaling import models as signaling_models

__all__ = ["Base", "audit_models", "auth_models", "consent_models", "people_models", "qa_feedback_models",
           "qa_models", "recording_models", "scheduling_models", "signaling_models"]
