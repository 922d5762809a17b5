#!/usr/bin/env python3
"""A mail user at work, through Python's imaplib: the real IMAP client the
feedback tests use to move messages and set keywords, as Thunderbird or
Outlook would.

    imap_user.py PORT USER PASSWORD move    MESSAGE_ID FROM TO
    imap_user.py PORT USER PASSWORD copy    MESSAGE_ID FROM TO
    imap_user.py PORT USER PASSWORD keyword MESSAGE_ID FOLDER KEYWORD

USER may be a master-user login (``alice*starling``). Prints how many
messages were acted on; exits 1 when none matched.
"""

import imaplib
import sys


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main(argv):
    port, user, password, command, message_id, folder = argv[1:7]
    rest = argv[7:]
    imap = imaplib.IMAP4("127.0.0.1", int(port))
    try:
        imap.login(user, password)
        status, _ = imap.select(quote(folder))
        if status != "OK":
            raise SystemExit(f"cannot select {folder}")
        status, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", quote(message_id))
        uids = data[0].split() if status == "OK" and data and data[0] else []
        if not uids:
            print(0)
            return 1
        uid_set = b",".join(uids).decode()
        if command == "move":
            status, data = imap.uid("MOVE", uid_set, quote(rest[0]))
        elif command == "copy":
            status, data = imap.uid("COPY", uid_set, quote(rest[0]))
        elif command == "keyword":
            status, data = imap.uid("STORE", uid_set, "+FLAGS", "(" + rest[0] + ")")
        else:
            raise SystemExit(f"unknown command {command}")
        if status != "OK":
            raise SystemExit(f"{command} failed: {data}")
        print(len(uids))
        return 0
    finally:
        try:
            imap.logout()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
