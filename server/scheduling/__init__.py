"""Physicians' schedules and consultations."""
