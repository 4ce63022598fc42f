"""Consultation notices to patients: the words (ru/en), the calendar invitation, e-mail and SMS transports.

Callers pass plain values (time, zone, physician's name, link); nothing here knows about consultations,
and nothing here can carry a reason for the visit.
"""

from server.notify.email import EmailSender, OutboxSender, SmtpSender, build_email, email_sender_from_settings
from server.notify.errors import DeliveryError, EmailDeliveryError, NotifyConfigurationError, SmsDeliveryError
from server.notify.ics import consultation_uid, invitation
from server.notify.messages import SMS_MAX_SEGMENTS, Message, NotificationKind, compose, format_when, sms_segments
from server.notify.sms import OutboxSmsGateway, SmsGateway, WebhookSmsGateway, sms_gateway_from_settings

__all__ = [
    "SMS_MAX_SEGMENTS",
    "DeliveryError",
    "EmailDeliveryError",
    "EmailSender",
    "Message",
    "NotificationKind",
    "NotifyConfigurationError",
    "OutboxSender",
    "OutboxSmsGateway",
    "SmsDeliveryError",
    "SmsGateway",
    "SmtpSender",
    "WebhookSmsGateway",
    "build_email",
    "compose",
    "consultation_uid",
    "email_sender_from_settings",
    "format_when",
    "invitation",
    "sms_gateway_from_settings",
    "sms_segments",
]
