"""An SMTP server for Beckon's tests (aiosmtpd): every message it accepts is written, one JSON
line each with its envelope, headers and body, to the log named on the command line.

    smtp_sink.py PORT_FILE LOG

The port (127.0.0.1, chosen by the system) is written to PORT_FILE. A recipient at the domain
refused.example is refused with 550 (a permanent failure).
"""
import asyncio
import json
import os
import socket
import sys
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller

port_file, log_path = sys.argv[1:]


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k: str(v) for k, v in msg.items()},
            "body": msg.get_body(preferencelist=("plain",)).get_content(),
        }
        with open(log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
os.replace(port_file + ".tmp", port_file)
asyncio.new_event_loop().run_forever()
