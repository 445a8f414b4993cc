"""Program figures (DESIGN.md §6): counters bumped by the transitions themselves, the figures
read from them, and the audit trail exported past retention.

counters      the counter vocabulary and the arithmetic of the figures
figures       reading a PSAP's counters for a date range (PSAP-local days)
audit         the audit export (JSON lines, no personal data)
"""
