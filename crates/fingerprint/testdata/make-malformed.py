#!/usr/bin/env python3
"""Writes the hand-made hostile messages in testdata/malformed/.

Deterministic: run it again and nothing changes. Each case is one thing
that real mail gets wrong or that an attacker would try; the golden test
fingerprints every file and checks the result (and that nothing panics).
"""
import base64
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "malformed")
HEAD = (b"From: sender@example.com\nTo: Jane Doe <jane.doe@example.org>\n"
        b"Subject: test\nDate: Mon, 2 Sep 2002 10:00:00 +0000\nMessage-ID: <x@example.com>\n")
TEXT = (b"This is an ordinary paragraph of text with enough words in it to be "
        b"fingerprinted, talking about garden furniture, seeds and tools.\n")


def write(name, data):
    with open(os.path.join(OUT, name + ".eml"), "wb") as f:
        f.write(data)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(7)
    write("empty", b"")
    write("garbage", bytes(rng.randrange(256) for _ in range(4096)))
    write("headers-only", HEAD)
    write("no-headers", b"\n" + TEXT)
    write("null-bytes", HEAD + b"\n" + TEXT.replace(b" ", b"\x00 ") + b"\x00" * 64)
    write("crlf-mixed", HEAD.replace(b"\n", b"\r\n") + b"\r\n" + TEXT.replace(b", ", b",\r\n") + b"\n\r\r\n")

    b64 = base64.encodebytes(TEXT * 3)
    write("unterminated-multipart", HEAD + b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="XX"\n\n'
          b"--XX\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n\n" + b64)
    write("missing-boundary", HEAD + b"MIME-Version: 1.0\nContent-Type: multipart/alternative\n\n" + TEXT)
    write("bad-base64", HEAD + b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
          b"VGhpcyBpcyB!!!not*base64***" + b64[:60] + b"====\n")
    write("bad-quoted-printable", HEAD + b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
          + TEXT.replace(b"o", b"=6F").replace(b"a", b"=ZZ") + b"=\n=4\n")
    write("unknown-charset", HEAD + b'Content-Type: text/plain; charset="x-unknown-9999"\n\n'
          + "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e for everyone in the garden this summer, delivered fresh daily.\n".encode("latin-1"))
    write("mislabelled-utf8", HEAD + b'Content-Type: text/plain; charset="utf-8"\n\n'
          + "Gr\u00fc\u00dfe aus M\u00fcnchen, wir liefern G\u00e4rten, Werkzeuge und Samen f\u00fcr jeden Garten.\n".encode("latin-1"))

    nested = b""
    depth = 120
    for i in range(depth):
        nested += f'--b{i}\nContent-Type: multipart/mixed; boundary="b{i + 1}"\n\n'.encode()
    nested += f"--b{depth}\nContent-Type: text/plain\n\n".encode() + TEXT
    for i in range(depth, -1, -1):
        nested += f"--b{i}--\n".encode()
    write("deep-nesting", HEAD + b'Content-Type: multipart/mixed; boundary="b0"\n\n' + nested)

    parts = b"".join(b"--P\nContent-Type: text/plain\n\nword%d\n" % i for i in range(2000))
    write("many-parts", HEAD + b'Content-Type: multipart/mixed; boundary="P"\n\n' + parts + b"--P--\n")

    hidden = ("<html><body><p>Sa<!-- x -->ve big on gar\u200bden fur<b></b>niture this week only, "
              "with free delivery to your door and a full refund if you are not happy.</p>"
              '<div style="display:none">hidden hash buster words that nobody sees at all</div>'
              '<font color="#ffffff" size="1">more invisible junk text here</font>'
              '<span style="font-size:0px">zero size</span></body></html>\n')
    write("hidden-html", HEAD + b"Content-Type: text/html; charset=utf-8\n\n" + hidden.encode())
    write("html-unclosed", HEAD + b"Content-Type: text/html\n\n"
          b"<html><body><p>garden <b>furniture <i>tools <a href=\"http://shop.example.com/x?id=1>seeds"
          b"<!-- never closed comment <div style='color:#fff'>" + TEXT + b"<script>if (a < b) {")
    write("html-deep", HEAD + b"Content-Type: text/html\n\n" + b"<div>" * 5000 + TEXT + b"</div>" * 10)
    write("long-line", HEAD + b"Content-Type: text/plain\n\n" + TEXT.strip() * 500 + b"\n")
    write("long-words", HEAD + b"Content-Type: text/plain\n\n" + (b"x" * 3000 + b" ") * 5 + TEXT)

    inner = HEAD + b"Content-Type: text/plain\n\nForwarded spam body: buy cheap watches now from our online shop today.\n"
    write("nested-message", HEAD + b'Content-Type: multipart/mixed; boundary="N"\n\n--N\nContent-Type: text/plain\n\n'
          b"see below\n--N\nContent-Type: message/rfc822\n\n" + inner + b"--N--\n")
    write("encoded-words", b"From: =?utf-8?q?M=C3=BCller?= <m@example.com>\n"
          b"To: =?iso-8859-1?q?J=F6rg_Sch=F6n?= <joerg.schoen@example.org>\nSubject: =?utf-8?b?w6TDtsO8?=\n\n"
          b"Hallo J\xc3\xb6rg Sch\xc3\xb6n, " + TEXT)
    write("header-flood", b"".join(b"X-Junk-%d: %s\n" % (i, b"v" * 50) for i in range(1000)) + b"\n" + TEXT)
    write("attachment-only", HEAD + b'Content-Type: multipart/mixed; boundary="A"\n\n--A\n'
          b'Content-Type: image/gif\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename="a.gif"\n\n'
          + base64.encodebytes(bytes(rng.randrange(256) for _ in range(3000))) + b"--A--\n")


if __name__ == "__main__":
    main()
