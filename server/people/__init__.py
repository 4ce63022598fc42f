"""Patients, physicians and QA experts: the people behind the accounts."""
