"""Accounts, passwords, tokens, sessions and second factors: who is asking."""
