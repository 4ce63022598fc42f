"""The browser pages for patients, physicians, QA experts and admins, in Russian and English."""
