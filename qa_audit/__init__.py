"""Quality audit: sampling, assignment, checklists, reviews, reports (issue 7)."""
