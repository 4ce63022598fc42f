"""What the consent pages say: purposes, statuses, signature levels, what withdrawing means, and the refusals.

Kept apart from the handlers so the wording can be reviewed (and translated in `consent.po`) in one place; the
texts are marked with `N_` and translated where they are shown, in the reader's language.
"""

from __future__ import annotations

from consent.models import ConsentPurpose, SignatureLevel
from consent.rules import GateProblem
from web.i18n import N_

# A purpose's name where the clinic's own title is not at hand (nothing published yet, staff lists).
PURPOSE_NAMES = {
    ConsentPurpose.telemedicine_care: N_("Medical care by teleconsultation"),
    ConsentPurpose.recording: N_("Recording of consultations"),
    ConsentPurpose.personal_data: N_("Processing of personal data"),
}

# The patient's status of one purpose, in plain words. `%(date)s` and `%(version)s` come from the latest consent.
PATIENT_STATUS = {
    None: N_("Signed on %(date)s (version %(version)s)"),
    GateProblem.missing: N_("Not signed yet"),
    GateProblem.outdated: N_("The text has changed since you signed it. Please read it and sign again."),
    GateProblem.withdrawn: N_("You withdrew this consent on %(date)s"),
    GateProblem.expired: N_("Your consent has expired. Please sign it again."),
    GateProblem.level_too_low: N_("The clinic needs a stronger signature for this document: sign it with your own "
                                  "certificate, or on paper at the clinic."),
    GateProblem.no_template: N_("The clinic has not published this document yet."),
}
# The same, in a word or two, as staff read it in a list.
STAFF_STATUS = {
    None: N_("signed"),
    GateProblem.missing: N_("not signed"),
    GateProblem.outdated: N_("text changed: to sign again"),
    GateProblem.withdrawn: N_("withdrawn"),
    GateProblem.expired: N_("expired"),
    GateProblem.level_too_low: N_("signature level too low"),
    GateProblem.no_template: N_("no text published"),
}

LEVEL_NAMES = {
    SignatureLevel.simple: N_("Simple e-signature (a one-time code)"),
    SignatureLevel.enhanced_unqualified: N_("Enhanced e-signature (own certificate)"),
    SignatureLevel.enhanced_qualified: N_("Qualified e-signature"),
    SignatureLevel.in_person: N_("Signed on paper at the clinic"),
}

# What withdrawing means, said before the patient confirms it.
WITHDRAW_MEANING = {
    ConsentPurpose.telemedicine_care: N_("You will not be able to have teleconsultations until you sign this consent "
                                         "again. A consultation already booked cannot start."),
    ConsentPurpose.personal_data: N_("The clinic cannot hold teleconsultations for you without this consent, until you "
                                     "sign it again. Your medical records are still kept, as the law requires."),
}
WITHDRAW_RECORDING = {
    True: N_("This clinic records every teleconsultation, so you will not be able to have teleconsultations until "
             "you sign this consent again. If a consultation is in progress, its recording stops."),
    False: N_("Your future consultations will not be recorded. If a consultation is in progress, its recording "
              "stops. Recordings made before stay in your medical record."),
}

# What the signing page says for each refusal, by its code.
SIGN_ERRORS = {
    "otp_wrong": N_("The code is not right. Tries left: %(left)s."),
    "otp_wrong_last": N_("The code is not right, and that was the last try. Please ask for a new code."),
    "otp_expired": N_("This code has expired. Please ask for a new code."),
    "otp_attempts_exhausted": N_("Too many wrong tries with this code. Please ask for a new code."),
    "otp_used": N_("This code has already been used. Please ask for a new code."),
    "otp_missing": N_("Please ask for a code first."),
    "otp_wrong_document": N_("This code was sent for another document. Please ask for a new code."),
    "code_format": N_("Please enter the 6 digits of the code."),
    "too_many_codes": N_("Too many codes were sent for this document. Please try again in an hour."),
    "code_not_sent": N_("The code could not be sent just now. Please try again in a minute."),
    "no_destination": N_("We have no address to send the code to. Please choose the other way, or call the clinic."),
    "enhanced_not_configured": N_("The clinic does not accept signatures made with your own certificate."),
    "document_outdated": N_("The clinic has just published a new version of this text. Please read it again: "
                            "the page now shows the new version."),
    "no_file": N_("Please choose the signature file."),
    "file_too_large": N_("The file is too large for a signature."),
    "error": N_("Something went wrong. Please try again."),
}

# Why an enhanced signature was not accepted (the verifier's codes), in words a patient can act on.
SIGNATURE_ERRORS = {
    "empty": N_("The file is empty."),
    "too_large": N_("The file is too large for a signature."),
    "malformed": N_("This file is not a signature. Choose the .p7s, .sig or .pem file your signing program made."),
    "not_detached": N_("The signature contains the document itself. Make a detached signature of the PDF."),
    "digest_mismatch": N_("The signature is for another file. Sign exactly the PDF downloaded from this page."),
    "bad_signature": N_("The signature does not match the document."),
    "unsupported_algorithm": N_("The signature uses an algorithm the clinic does not accept."),
    "untrusted": N_("The certificate was not issued by a certification authority the clinic trusts."),
    "expired": N_("The certificate has expired."),
    "not_yet_valid": N_("The certificate is not valid yet."),
    "key_usage": N_("This certificate may not be used to sign documents."),
    "revoked": N_("The certificate has been revoked."),
    "subject_mismatch": N_("The certificate belongs to someone else: its e-mail or SNILS is not yours."),
}

# The paper-consent and consent-text pages' refusals.
STAFF_ERRORS = {
    "no_file": N_("Choose the scan of the signed page."),
    "too_large": N_("The file is too large. Scan at a lower resolution, or upload a PDF."),
    "unsupported_media_type": N_("The scan must be a PDF, JPEG or PNG file."),
    "already_signed": N_("This document is already signed."),
    "note_too_long": N_("The note is too long (at most 500 characters)."),
    "template_published": N_("A published version never changes. Create a new draft instead."),
    "draft_conflict": N_("Someone else drafted a version of this text at the same moment. Reload the page."),
    "no_published_template": N_("The clinic has not published this document yet."),
    "error": N_("The change could not be made. Reload the page and try again."),
}
