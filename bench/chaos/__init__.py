"""Chaos run: schedule, revise and cancel emails while SIGKILLing the app, the iWF server and the
Temporal dev server at random moments, while the model and the mail server misbehave at random; then
check every email against the SMTP sink.

    make chaos                              # N=200
    python -m bench.chaos --n 30 --seed 7   # replay a run: same seed, same plan, kills and faults

Each email goes in through the HTTP API or as a signed Slack DM. A client retries every operation until
the app answers (Slack re-delivers events, people press again), with an idempotency key, as real clients
do. Then it behaves as a user reading the answers: when the assistant failed on a request (the email
shows `last_error` and no answer), it says the same words again; when the mail server refused the email
for good (`failed`), it asks again to send it; an email whose delivery is unknown (`unconfirmed`) is not
sent again. What the app *understood* (an assistant answer after the user's words) defines what must
happen: an accepted cancel must never be delivered, the last understood revision is what is delivered,
an email scheduled by the last understood request is delivered exactly once (or reported "delivery
unknown"), and nothing is silently unscheduled or left running.

Faults are drawn from the seed and the place they happen (which email, its how-manyth model call or
delivery), so a replay injects the same faults in the same places however the run's timing differs:
the fake model answers 429, 500, garbage or too slowly; the SMTP sink answers 451 or 554, takes the
message and drops the connection, drops it before taking the message, or holds its answer (a slow server,
so a kill can land mid-delivery).

The mail account has a Sent folder (a real IMAP server, pymap, which the sink files every message it
takes into, as Gmail does), so a lost answer is settled by asking it; `--no-sent-folder` runs the same
plan against a plain SMTP account, where a lost answer is "delivery unknown".
"""

from bench.chaos.plan import MODEL_FAULTS, SMTP_FAULTS, Config
from bench.chaos.report import Report
from bench.chaos.run import run_chaos

__all__ = ["MODEL_FAULTS", "SMTP_FAULTS", "Config", "Report", "run_chaos"]
