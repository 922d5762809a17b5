#!/usr/bin/env python3
"""A mail user at work, through Python's imaplib: the real IMAP client the
feedback tests use to move messages and set keywords, as Thunderbird or
Outlook would.

    imap_user.py PORT USER PASSWORD move    MESSAGE_ID FROM TO
    imap_user.py PORT USER PASSWORD copy    MESSAGE_ID FROM TO
    imap_user.py PORT USER PASSWORD keyword MESSAGE_ID FOLDER KEYWORD

USER may be a master-user login (``alice*starling``). Prints how many
messages were acted on; exits 1 when none matched.

A person reading their mail (the deployment benchmark's reporters):

    imap_user.py PORT USER PASSWORD round TRUTH_FILE SPAM_FOLDER
    imap_user.py PORT USER PASSWORD inventory FOLDER...
    imap_user.py PORT USER PASSWORD spam-folder
    imap_user.py PORT USER PASSWORD append FOLDER FILE FLAGS DAYS_AGO

``round`` reads every unread message of INBOX (``FETCH BODY[]``, which sets
``\Seen``), moves the spam among INBOX's messages to SPAM_FOLDER and the
ham in SPAM_FOLDER back to INBOX (one ``UID MOVE`` each); TRUTH_FILE has a
line ``MESSAGE-ID<TAB>spam|ham`` per message the person can tell apart
(Message-IDs without angle brackets; others are left alone). It prints JSON:
``{"read": N, "spam_moved": [[ID, UNIX_TIME], ...], "ham_rescued": [...]}``,
counting only the messages the server says it moved (``COPYUID``).
``append FOLDER FILE FLAGS DAYS_AGO`` appends the message in FILE with
FLAGS (e.g. ``(\\Seen)``, or empty) and an INTERNALDATE DAYS_AGO days back:
mail a user had long before the agent came.
``inventory`` prints ``{"FOLDER": [MESSAGE-ID, ...], ...}`` (examined, never
changed; a missing folder is empty). ``spam-folder`` prints the folder with
the ``\Junk`` special use, else ``Spam`` when it exists, else nothing.
"""

import imaplib
import json
import re
import sys
import time


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set_items(text):
    """The UIDs of an IMAP sequence set (``1:3,7``)."""
    out = []
    for part in text.split(","):
        if ":" in part:
            low, high = (int(x) for x in part.split(":"))
            out.extend(range(min(low, high), max(low, high) + 1))
        elif part:
            out.append(int(part))
    return out


MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?<?([^>\s]*)>?", re.IGNORECASE | re.MULTILINE)
UID = re.compile(rb"UID (\d+)")


def message_ids(imap):
    """(uid, Message-ID) of every message of the selected folder."""
    status, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    if status != "OK":
        raise SystemExit(f"fetch failed: {data}")
    out = []
    for item in data:
        if not isinstance(item, tuple):
            continue
        uid = UID.search(item[0])
        found = MESSAGE_ID.search(item[1] or b"")
        if uid:
            out.append((int(uid.group(1)), found.group(1).decode("utf-8", "replace") if found else ""))
    return out


def move(imap, uids, destination):
    """Moves UIDs of the selected folder; the UIDs the server moved."""
    if not uids:
        return []
    imap.untagged_responses.pop("COPYUID", None)
    status, data = imap.uid("MOVE", ",".join(str(u) for u in uids), quote(destination))
    if status != "OK":
        raise SystemExit(f"move to {destination} failed: {data}")
    _, codes = imap.response("COPYUID")
    moved = []
    for code in codes or []:
        if code is None:
            continue
        parts = code.decode().split()
        if len(parts) >= 2:
            moved.extend(uid_set_items(parts[1]))
    if codes and codes != [None]:
        return moved
    # No COPYUID (nothing moved, or a server without UIDPLUS): what is gone.
    present = {uid for uid, _ in message_ids(imap)}
    return [uid for uid in uids if uid not in present]


def person(imap, argv):
    command = argv[4]
    if command == "spam-folder":
        status, data = imap.list()
        names = []
        for line in data if status == "OK" else []:
            if not isinstance(line, bytes):
                continue
            found = re.match(rb'\(([^)]*)\) (?:"[^"]*"|NIL) (.*)$', line)
            if not found:
                continue
            name = found.group(2).decode()
            if name.startswith('"') and name.endswith('"'):
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            if b"\\junk" in found.group(1).lower():
                print(name)
                return 0
            names.append(name)
        print("Spam" if "Spam" in names else "")
        return 0
    if command == "inventory":
        out = {}
        for folder in argv[5:]:
            status, _ = imap.select(quote(folder), readonly=True)
            out[folder] = [mid for _, mid in message_ids(imap)] if status == "OK" else []
        print(json.dumps(out))
        return 0
    if command == "round":
        truth = {}
        with open(argv[5], encoding="utf-8") as f:
            for line in f:
                mid, _, kind = line.rstrip("\n").partition("\t")
                truth[mid] = kind == "spam"
        spam_folder = argv[6]
        result = {"read": 0, "spam_moved": [], "ham_rescued": []}
        status, _ = imap.select("INBOX")
        if status != "OK":
            raise SystemExit("cannot select INBOX")
        status, data = imap.uid("SEARCH", None, "UNSEEN")
        unseen = data[0].split() if status == "OK" and data and data[0] else []
        for start in range(0, len(unseen), 100):
            chunk = b",".join(unseen[start : start + 100]).decode()
            status, data = imap.uid("FETCH", chunk, "(BODY[])")
            if status != "OK":
                raise SystemExit(f"reading failed: {data}")
        result["read"] = len(unseen)
        for source, destination, wanted, key in (
            ("INBOX", spam_folder, True, "spam_moved"),
            (spam_folder, "INBOX", False, "ham_rescued"),
        ):
            status, _ = imap.select(quote(source))
            if status != "OK":
                continue
            listed = [(uid, mid) for uid, mid in message_ids(imap) if truth.get(mid) is wanted]
            moved = set(move(imap, [uid for uid, _ in listed], destination))
            at = time.time()
            result[key] = [[mid, at] for uid, mid in listed if uid in moved]
        print(json.dumps(result))
        return 0
    if command == "append":
        folder, path, flags, days_ago = argv[5], argv[6], argv[7], float(argv[8])
        with open(path, "rb") as f:
            raw = f.read()
        when = imaplib.Time2Internaldate(time.time() - days_ago * 86400)
        status, data = imap.append(quote(folder), flags or None, when, raw)
        if status != "OK":
            raise SystemExit(f"append failed: {data}")
        print(1)
        return 0
    raise SystemExit(f"unknown command {command}")


def main(argv):
    if len(argv) >= 5 and argv[4] in ("round", "inventory", "spam-folder", "append"):
        imap = imaplib.IMAP4("127.0.0.1", int(argv[1]), timeout=120)
        try:
            imap.login(argv[2], argv[3])
            return person(imap, argv)
        finally:
            try:
                imap.logout()
            except Exception:
                pass
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
