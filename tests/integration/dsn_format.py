"""dsn_format: the notices queue/dsn.c composes parse as RFC 3464 reports.

    /usr/bin/python3 tests/integration/dsn_format.py [PATH/TO/sluiced]

tests/dsn/dsn_sample (built beside sluiced: BUILD/tests/dsn/dsn_sample, or
$DSN_SAMPLE) composes a failure, delay or success notice about a fixed
sample original.  Each notice is read with Python's email package twice,
policy=email.policy.default and policy=email.policy.compat32, and checked
field by field against what RFC 3464, 3461, 6522, 6533 and 3834 ask:

  - every line CRLF-terminated and at most 998 octets (RFC 5322 2.1.1);
  - top-level From (MAILER-DAEMON), To (the original sender), Subject,
    Date (parseable, the sample's clock), Message-ID, MIME-Version,
    Auto-Submitted: auto-replied, Content-Type multipart/report with the
    report-type that names part 2; each exactly once, no parser defects;
  - three parts in order: text/plain, message/(global-)delivery-status,
    and message/rfc822 / message/global or text/rfc822-headers /
    message/global-headers as RET and the size cap decide;
  - part 2's per-message and per-recipient fields, values and RFC order
    (ENVID and ORCPT decoded from xtext);
  - the returned original byte-identical (whole, or its header section);
  - the notice's own envelope (null sender, NOTIFY=NEVER, BODY, SMTPUTF8);
  - a hostile diagnostic and remote host (CR, LF, a copy of the boundary,
    header lines, 8-bit octets) and an original holding that boundary add
    no header field and no part.

Exit 0 pass, 1 fail (got/want on stderr).
"""

import datetime
import email
import email.policy
import email.utils
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sluice_harness as sh  # noqa: E402
from sluice_harness import check, check_eq, fail, info  # noqa: E402

# The sample's fixed inputs (tests/dsn/dsn_sample.c).
NOW = 1700000000
REPORTING_MTA = "relay.example.com"
QID = "0123456789ABCDEF"
ASCII_SENDER = "alice@example.org"
UTF8_SENDER = "j\u00f6s\u00e9@example.org"
REMOTE_MTA = "mx1.example.net"
DEFAULT_MAX_RETURN = 1024 * 1024  # DSN_MAX_RETURN_DEFAULT

POLICIES = (("default", email.policy.default), ("compat32", email.policy.compat32))

SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
    "relayed": "Successful Mail Delivery Report",
}
STATUSES = {"failed": "5.1.1", "delayed": "4.4.1", "delivered": "2.0.0", "relayed": "2.0.0"}

# RFC 3464 2.2 and 2.3: the order the fields take in each group.
PER_MESSAGE_ORDER = ["original-envelope-id", "reporting-mta", "dsn-gateway",
                     "received-from-mta", "arrival-date"]
PER_RCPT_ORDER = ["original-recipient", "final-recipient", "action", "status", "remote-mta",
                  "diagnostic-code", "last-attempt-date", "final-log-id", "will-retry-until"]


def fmt_date(t):
    return email.utils.format_datetime(
        datetime.datetime.fromtimestamp(t, datetime.timezone.utc)).replace("-0000", "+0000")


# ---------------------------------------------------------------- running

def sample_path():
    p = os.environ.get("DSN_SAMPLE")
    if not p:
        p = os.path.join(os.path.dirname(sh.sluiced_path()), "tests", "dsn", "dsn_sample")
    check(os.access(p, os.X_OK), "dsn_sample is built and executable (ninja builds it "
          "with sluiced; or set DSN_SAMPLE)", p, "BUILD/tests/dsn/dsn_sample")
    return p


SAMPLE = None


def run_sample(args):
    """(notice envelope dict, message bytes) from dsn_sample args (str or bytes)."""
    try:
        r = subprocess.run([SAMPLE] + list(args), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        fail("dsn_sample %r did not finish within 30 s" % (args,))
    if r.returncode != 0:
        fail("dsn_sample %r exited %d: %s" % (args, r.returncode,
                                              r.stderr.decode("utf-8", "replace")))
    line, _, msg = r.stdout.partition(b"\n")
    return json.loads(line.decode("utf-8")), msg


def original_of(args):
    """The original dsn_sample composes about, for these args."""
    r = subprocess.run([SAMPLE, "--original"] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    check_eq(r.returncode, 0, "dsn_sample --original exit status")
    return r.stdout


# ---------------------------------------------------------------- raw checks

def check_lines(raw, what):
    """CRLF after every line, no bare CR or LF, none over 998 octets."""
    check(raw.endswith(b"\r\n"), "%s: ends with CRLF" % what, raw[-20:])
    lines = raw[:-2].split(b"\r\n")
    for i, l in enumerate(lines):
        if b"\r" in l or b"\n" in l:
            fail("%s: bare CR or LF in line %d" % (what, i + 1), l[:120])
        if len(l) > 998:
            fail("%s: line %d is %d octets" % (what, i + 1, len(l)), l[:80], "<= 998 octets")


def header_section(raw):
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[:end + 2]


def split_parts(raw, boundary):
    """Cut the message at its delimiter lines: (head, [part bytes], epilogue).
    A part is its header fields, the blank line and its content; the CRLF
    before the next delimiter line belongs to the delimiter (RFC 2046
    5.1.1), so content that ended in CRLF keeps it.  Fails unless the
    delimiter lines are exactly three and the close delimiter."""
    delim = b"--" + boundary.encode("ascii")
    lines = raw.split(b"\r\n")
    marks = [i for i, l in enumerate(lines) if l.startswith(delim)]
    kinds = [lines[i][len(delim):] for i in marks]
    check_eq(kinds, [b"", b"", b"", b"--"],
             "delimiter lines of the boundary (3 parts and the close delimiter)")
    parts = [b"\r\n".join(lines[a + 1:b]) for a, b in zip(marks, marks[1:])]
    head = b"\r\n".join(lines[:marks[0]])
    epilogue = b"\r\n".join(lines[marks[-1] + 1:])
    return head, parts, epilogue


def status_groups(raw, policy=email.policy.default):
    """Part 2's groups of a raw notice, parsed."""
    b = email.message_from_bytes(raw, policy=policy).get_boundary()
    return parse_groups(part_body(split_parts(raw, b)[1][1])[1], policy)


def part_body(part):
    """Header fields and content of one raw part."""
    end = part.find(b"\r\n\r\n")
    check(end >= 0, "a part has a header section and a blank line", part[:200])
    return part[:end + 2], part[end + 4:]


def text_of(b, charset, what):
    """b decoded, or a failure naming what was not valid charset text."""
    try:
        return b.decode(charset)
    except UnicodeDecodeError as e:
        fail("%s is not valid %s: %s" % (what, charset, e), b[max(0, e.start - 40):e.end + 40])


def unfold(v):
    return v.replace("\r\n", "").replace("\n", "")


def raw_fields(msg):
    """[(lower-case name, value)] in order, from the parser's raw items,
    8-bit octets restored and folds removed (RFC 5322 2.2.3)."""
    out = []
    for k, v in msg.raw_items():
        if not isinstance(v, str):
            v = str(v)
        v = text_of(v.encode("utf-8", "surrogateescape"), "utf-8", "header field %s" % k)
        out.append((k.lower(), unfold(v).strip()))
    return out


def parse_groups(content, policy):
    """The blocks of a delivery-status body, each parsed as a header
    section: [[(name, value)], ...]."""
    check(content.endswith(b"\r\n"), "the status fields end with CRLF", content[-40:])
    blocks = content[:-2].split(b"\r\n\r\n")
    out = []
    for b in blocks:
        check(b != b"" and not b.startswith(b"\r\n"), "no empty group in part 2", blocks)
        m = email.message_from_bytes(b + b"\r\n\r\n", policy=policy)
        check_eq(m.defects, [], "parser defects in a status group")
        check_eq(m.get_payload(), "", "a status group is header fields only")
        out.append(raw_fields(m))
    return out


def check_order(names, order, what):
    known = [n for n in names if n in order]
    check_eq(known, sorted(known, key=order.index), "%s: RFC 3464 field order" % what)
    ext = [i for i, n in enumerate(names) if n not in order]
    # Extension fields come after the standard ones (RFC 3464 2.2, 2.3).
    check(all(i >= len(known) for i in ext), "%s: extension fields last" % what, names)
    for n in names:
        check_eq(names.count(n), 1, "%s: field %s once" % (what, n))


# ---------------------------------------------------------------- the checker

class Want:
    """What one notice must say."""

    def __init__(self, kind="failed", nrcpts=1, utf8=False, eight=False, ret="unset",
                 envid=None, orcpt=False, full=None, capped=False, diag0=None,
                 remote0=None, args=()):
        self.kind = kind
        self.nrcpts = nrcpts
        self.utf8 = utf8
        self.eight = eight
        self.envid = envid  # decoded value expected, or None
        self.orcpt = orcpt
        if full is None:
            full = ret == "full" or (ret == "unset" and kind == "failed")
        self.full = full and not capped
        self.capped = capped
        self.diag0 = diag0
        self.remote0 = remote0 or REMOTE_MTA
        self.args = list(args)
        self.sender = UTF8_SENDER if utf8 else ASCII_SENDER

    def rcpt_addr(self, i):
        return ("b\u00f8b%d@example.net" if self.utf8 and i == 0 else "bob%d@example.net") % i

    def diagnostic(self, i):
        if i == 0 and self.diag0 is not None:
            return self.diag0
        if self.kind == "failed":
            return ("smtp; 550 5.1.1 <bob%d@example.net>: Recipient address rejected: "
                    "User unknown" % i)
        if self.kind == "delayed":
            return "X-Sluice; connect to mx1.example.net[192.0.2.1]:25: Connection timed out"
        return "smtp; 250 2.0.0 Ok: queued as ABC%d" % i


def check_envelope(env, w, raw):
    what = "notice envelope"
    check_eq(env["sender"], "", "%s: null sender (RFC 3461 6.2)" % what)
    check_eq(env["recipients"], [{"addr": w.sender, "orcpt": None, "notify": 1}],
             "%s: one recipient, the original sender, NOTIFY=NEVER" % what)
    has8 = any(b >= 0x80 for b in raw)
    check_eq(env["body"], "8BITMIME" if has8 else "7BIT", "%s: BODY" % what)
    check_eq(env["smtputf8"], w.utf8, "%s: SMTPUTF8" % what)
    check_eq(env["envid"], None, "%s: no ENVID" % what)


def check_top(msg, w, pname):
    what = "top level (%s)" % pname
    check_eq(msg.defects, [], "%s: parser defects" % what)
    fields = raw_fields(msg)
    names = [n for n, _ in fields]
    for n in ("from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version",
              "content-type"):
        check_eq(names.count(n), 1, "%s: %s exactly once" % (what, n))
    vals = dict(fields)
    name, addr = email.utils.parseaddr(vals["from"])
    check_eq(addr, "MAILER-DAEMON@" + REPORTING_MTA, "%s: From address" % what)
    check(name != "", "%s: From has a display name" % what, vals["from"])
    check_eq(vals["to"], "<%s>" % w.sender, "%s: To is the original sender" % what)
    check_eq(vals["subject"], SUBJECTS[w.kind], "%s: Subject" % what)
    check_eq(vals["auto-submitted"], "auto-replied", "%s: Auto-Submitted (RFC 3834 5)" % what)
    check_eq(vals["mime-version"], "1.0", "%s: MIME-Version" % what)
    check(re.fullmatch(r"<[A-Za-z0-9._-]+@%s>" % re.escape(REPORTING_MTA), vals["message-id"]),
          "%s: Message-ID" % what, vals["message-id"], "<unique@%s>" % REPORTING_MTA)
    check(QID in vals["message-id"], "%s: Message-ID names the queue id" % what,
          vals["message-id"])
    if pname == "default":
        d = msg["Date"].datetime
        check_eq(msg["From"].addresses[0].username, "MAILER-DAEMON", "%s: From local part" % what)
        if not w.utf8:
            check_eq(msg["To"].addresses[0].addr_spec, w.sender, "%s: To (parsed)" % what)
    else:
        d = email.utils.parsedate_to_datetime(vals["date"])
    check(d is not None and d.utcoffset() is not None, "%s: Date has a zone" % what, vals["date"])
    check_eq(int(d.timestamp()), NOW, "%s: Date is the compose time" % what)
    check_eq(msg.get_content_type(), "multipart/report", "%s: Content-Type" % what)
    rtype = "global-delivery-status" if w.utf8 else "delivery-status"
    check_eq(msg.get_param("report-type"), rtype, "%s: report-type (RFC 6522 3)" % what)
    b = msg.get_boundary()
    check(b and 1 <= len(b) <= 70, "%s: boundary 1..70 characters (RFC 2046 5.1.1)" % what, b)
    check(re.fullmatch(r"[0-9A-Za-z'()+_,./:=? -]*[0-9A-Za-z'()+_,./:=?-]", b),
          "%s: boundary is bchars" % what, b)
    return b


def check_human(part, content, w, pname):
    what = "part 1 (%s)" % pname
    check_eq(part.get_content_type(), "text/plain", "%s: type" % what)
    cs = "utf-8" if w.utf8 else "us-ascii"
    check_eq(part.get_content_charset(), cs, "%s: charset" % what)
    check_eq(part.get_payload(decode=True), content, "%s: payload as parsed" % what)
    text = text_of(content, cs, what)
    check(("This is the mail system at %s." % REPORTING_MTA) in text,
          "%s: names the reporting MTA" % what, text[:200])
    flat = re.sub(r"\s+", " ", text)
    for i in range(w.nrcpts):
        line = "<%s>: " % w.rcpt_addr(i)
        check(line in flat, "%s: names recipient %d" % (what, i), flat[:600], line)
        check("(status %s)" % STATUSES[w.kind] in flat, "%s: gives the status" % what, flat[:600])
    if w.full:
        check("The original message is attached." in flat, "%s: says the original is attached"
              % what, flat[-300:])
    elif w.capped:
        check("only its headers are attached" in flat and "more than the" in flat,
              "%s: says the original was too big to return" % what, flat[-300:])
    else:
        check("The headers of the original message are attached." in flat,
              "%s: says the headers are attached" % what, flat[-300:])


def check_status(part, content, w, pname):
    what = "part 2 (%s)" % pname
    ctype = "message/global-delivery-status" if w.utf8 else "message/delivery-status"
    check_eq(part.get_content_type(), ctype, "%s: type" % what)
    groups = parse_groups(content, POLICIES[0][1] if pname == "default" else POLICIES[1][1])
    check_eq(len(groups), 1 + w.nrcpts, "%s: per-message group and one per recipient" % what)
    if ctype == "message/delivery-status":
        # Python reads this type itself: one sub-message per group.
        py = part.get_payload()
        check_eq(len(py), 1 + w.nrcpts, "%s: groups as Python parses them" % what)
        for g, m in zip(groups, py):
            check_eq(g, raw_fields(m), "%s: Python's view of a group" % what)

    names = [n for n, _ in groups[0]]
    check_order(names, PER_MESSAGE_ORDER, what + " per-message")
    v = dict(groups[0])
    check_eq(v.get("reporting-mta"), "dns; " + REPORTING_MTA, "%s: Reporting-MTA" % what)
    check_eq(v.get("original-envelope-id"), w.envid, "%s: Original-Envelope-Id" % what)
    check_eq(v.get("arrival-date"), fmt_date(NOW - 3600), "%s: Arrival-Date" % what)
    check_eq(v.get("x-sluice-queue-id"), QID, "%s: X-Sluice-Queue-ID" % what)
    check_eq(sorted(v), sorted(["reporting-mta", "arrival-date", "x-sluice-queue-id"] +
                               (["original-envelope-id"] if w.envid else [])),
             "%s: per-message field set" % what)

    for i, g in enumerate(groups[1:]):
        rw = "%s recipient %d" % (what, i)
        names = [n for n, _ in g]
        check_order(names, PER_RCPT_ORDER, rw)
        v = dict(g)
        want_names = ["final-recipient", "action", "status", "remote-mta", "diagnostic-code",
                      "last-attempt-date"]
        if w.orcpt:
            want_names.append("original-recipient")
        if w.kind == "delayed":
            want_names.append("will-retry-until")
        check_eq(sorted(names), sorted(want_names), "%s: field set" % rw)
        addr = w.rcpt_addr(i)
        atype = "utf-8" if any(ord(c) > 127 for c in addr) else "rfc822"
        check_eq(v["final-recipient"], "%s; %s" % (atype, addr), "%s: Final-Recipient" % rw)
        if w.orcpt:
            # ORCPT=rfc822;bobN+2Balias@example.net, decoded from xtext.
            check_eq(v["original-recipient"], "rfc822;bob%d+alias@example.net" % i,
                     "%s: Original-Recipient" % rw)
        check_eq(v["action"], w.kind, "%s: Action" % rw)
        check_eq(v["status"], STATUSES[w.kind], "%s: Status" % rw)
        check(re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", v["status"]), "%s: Status syntax" % rw)
        remote = w.remote0 if i == 0 else REMOTE_MTA
        check_eq(v["remote-mta"], "dns; " + clean(remote, w.utf8), "%s: Remote-MTA" % rw)
        diag = clean(w.diagnostic(i), w.utf8)
        if not re.match(r"[A-Za-z0-9-]+ *;", diag):
            diag = "X-Sluice; " + diag
        check_eq(v["diagnostic-code"], diag, "%s: Diagnostic-Code" % rw)
        check(re.match(r"[A-Za-z0-9-]+ *; ", v["diagnostic-code"]),
              "%s: Diagnostic-Code is diagnostic-type; text" % rw, v["diagnostic-code"])
        check_eq(v["last-attempt-date"], fmt_date(NOW - 60), "%s: Last-Attempt-Date" % rw)
        if w.kind == "delayed":
            check_eq(v["will-retry-until"], fmt_date(NOW + 5 * 86400),
                     "%s: Will-Retry-Until" % rw)


def clean(s, utf8):
    """What dsn.c makes of remote text: controls to spaces, runs of spaces
    to one, ends trimmed, 8-bit octets '?' unless the notice is UTF-8."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c < 0x20 or c == 0x7f or c == 0x20:
            out += b" "
            i += 1
            continue
        if c >= 0x80:
            n = 2 if c >> 5 == 6 else 3 if c >> 4 == 14 else 4 if c >> 3 == 30 else 0
            seq = s[i:i + n]
            try:
                ok = n and len(seq) == n and seq.decode("utf-8")
            except UnicodeDecodeError:
                ok = False
            if not utf8 or not ok:
                out += b"?"
                i += 1
                continue
            out += seq
            i += n
            continue
        out.append(c)
        i += 1
    return re.sub(r" +", " ", out.decode("utf-8")).strip()


def check_returned(part, content, w, original, pname):
    what = "part 3 (%s)" % pname
    if w.full:
        ctype = "message/global" if w.utf8 else "message/rfc822"
        want = original
    else:
        ctype = "message/global-headers" if w.utf8 else "text/rfc822-headers"
        want = header_section(original)
    check_eq(part.get_content_type(), ctype, "%s: type (RET and size decide)" % what)
    check(content == want, "%s: returned %s byte-identical (%d octets, want %d)" %
          (what, "original" if w.full else "header section", len(content), len(want)),
          content[:200], want[:200])
    cte = part.get("Content-Transfer-Encoding", "").lower()
    check_eq(cte, "8bit" if any(b >= 0x80 for b in content) else "7bit", "%s: CTE" % what)
    if ctype.startswith("message/") and ctype != "message/global-headers":
        inner = part.get_payload()
        check(isinstance(inner, list) and len(inner) == 1, "%s: one enclosed message" % what)
        check_eq(dict(raw_fields(inner[0])).get("subject"), "Quarterly report",
                 "%s: the enclosed message's Subject" % what)


def check_notice(args, w, pre=None, label=None):
    """Compose with args and check everything; returns (boundary, raw)."""
    env, raw = run_sample(args)
    original = original_of(args)
    label = label or " ".join(args) or "(defaults)"
    check_lines(raw, label)
    check_envelope(env, w, raw)
    seen = None
    for pname, policy in POLICIES:
        msg = email.message_from_bytes(raw, policy=policy)
        b = check_top(msg, w, pname)
        check(seen is None or b == seen, "same boundary under both policies")
        seen = b
        head, parts, epilogue = split_parts(raw, b)
        check_eq(epilogue, b"", "%s: nothing after the close delimiter" % label)
        if not w.utf8:
            # An ASCII notice: 8-bit octets only in the returned original.
            check(all(c < 0x80 for c in head + parts[0] + parts[1]),
                  "%s: header section, parts 1 and 2 are 7-bit" % label)
        has8 = any(c >= 0x80 for c in raw)
        check_eq(msg.get("Content-Transfer-Encoding", "").lower(), "8bit" if has8 else "7bit",
                 "%s: top-level Content-Transfer-Encoding" % label)
        top = msg.get_payload()
        check(msg.is_multipart() and len(top) == 3, "%s (%s): three parts" % (label, pname),
              [p.get_content_type() for p in top] if isinstance(top, list) else top)
        for p in msg.walk():
            check_eq(p.defects, [], "%s (%s): defects in %s" % (label, pname,
                                                               p.get_content_type()))
        contents = []
        for i, (p, rawp) in enumerate(zip(top, parts)):
            ph, content = part_body(rawp)
            pm = email.message_from_bytes(ph + b"\r\n", policy=policy)
            check_eq(sorted(n for n, _ in raw_fields(pm)),
                     ["content-description", "content-transfer-encoding", "content-type"],
                     "%s: part %d header fields" % (label, i + 1))
            contents.append(content)
        check_human(top[0], contents[0], w, pname)
        check_status(top[1], contents[1], w, pname)
        check_returned(top[2], contents[2], w, original, pname)
        if pre:
            pre(msg, raw, b, pname)
    info("ok: %s" % label)
    return seen, raw


# ---------------------------------------------------------------- cases

def hostile_cases():
    _, raw = run_sample([])
    first = email.message_from_bytes(raw, policy=email.policy.default).get_boundary()
    fake = first.encode()
    # What a remote server could send: line ends, a header, a blank line, the
    # notice's own boundary as a delimiter, a whole fake part and a close.
    diag = (b"smtp; 550 5.1.1 no such user\r\nX-Injected: diag\r\n\r\n--" + fake +
            b"\r\nContent-Type: text/html\r\nX-Injected: part\r\n\r\n<b>evil</b>\r\n--" + fake +
            b"--\r\n\nbare\rcr \xff\xfe r\xc3\xa9ponse \xed\xa0\x80 tail")
    remote = b"mx.evil\r\nX-Injected: mta\r\n"
    trap = b"\r\n--" + fake + b"\r\nContent-Type: text/plain\r\nX-Injected: body\r\n\r\ntrap\r\n"

    def no_injection(msg, raw, b, pname):
        check(b != first, "the boundary is not the one the original holds", b, "not " + first)
        for p in msg.walk():
            names = [n for n, _ in raw_fields(p)]
            check("x-injected" not in names, "no injected header field (%s, %s)" %
                  (pname, p.get_content_type()), names)
        # Every line starting "X-Injected" sits inside the returned original's body.
        ret_start = raw.rfind(b"\r\n--" + b.encode() + b"\r\nContent-Description: Original")
        for m in re.finditer(rb"\r\nX-Injected", raw):
            check(m.start() > ret_start, "X-Injected at a line start only in the returned body",
                  raw[m.start() - 60:m.start() + 40])

    args = [b"--diag", diag, b"--remote-mta", remote, b"--append", trap, b"--ret", b"full"]
    w = Want(kind="failed", ret="full", diag0=diag, remote0=remote)
    _, raw = check_notice(args, w, pre=no_injection, label="hostile remote text (ASCII notice)")
    check(all(c < 0x80 for c in raw), "an ASCII notice stays 7-bit with 8-bit remote text")

    # The same in a UTF-8 notice: well-formed UTF-8 kept, stray octets and
    # an encoded surrogate not.
    diag8 = diag
    args = [b"--utf8", b"--diag", diag8, b"--remote-mta", remote, b"--append", trap]
    check_notice(args, Want(kind="failed", utf8=True, diag0=diag8, remote0=remote),
                 pre=no_injection, label="hostile remote text (UTF-8 notice)")


def body():
    global SAMPLE
    SAMPLE = sample_path()

    # Failures: RET absent (whole original), FULL with ENVID and ORCPT, HDRS.
    check_notice([], Want(kind="failed"))
    check_notice(["--ret", "full", "--envid", "ENV+2B0001", "--orcpt", "--rcpts", "3"],
                 Want(kind="failed", ret="full", envid="ENV+0001", orcpt=True, nrcpts=3))
    check_notice(["--ret", "hdrs"], Want(kind="failed", ret="hdrs"))
    check_notice(["--8bit", "--ret", "full"], Want(kind="failed", ret="full", eight=True))
    check_notice(["--8bit", "--ret", "hdrs"], Want(kind="failed", ret="hdrs", eight=True))

    # Delays: headers by default (RFC 3461 4.3), Will-Retry-Until.
    check_notice(["--kind", "delayed"], Want(kind="delayed"))
    check_notice(["--kind", "delayed", "--ret", "hdrs", "--envid", "d+3Dx", "--orcpt",
                  "--rcpts", "50"],
                 Want(kind="delayed", ret="hdrs", envid="d=x", orcpt=True, nrcpts=50))

    # Successes (NOTIFY=SUCCESS).
    check_notice(["--kind", "delivered", "--rcpts", "2"], Want(kind="delivered", nrcpts=2))
    check_notice(["--kind", "relayed"], Want(kind="relayed"))

    # UTF-8 addresses (RFC 6533): global types, utf-8 address type.
    check_notice(["--utf8", "--orcpt", "--envid", "u1"],
                 Want(kind="failed", utf8=True, orcpt=True, envid="u1"))
    check_notice(["--utf8", "--kind", "delayed", "--rcpts", "2"],
                 Want(kind="delayed", utf8=True, nrcpts=2))
    check_notice(["--utf8", "--ret", "hdrs"], Want(kind="failed", utf8=True, ret="hdrs"))

    # Oversized originals come back as headers only, and the notice says so.
    size = len(original_of([]))
    check_notice(["--max-return", str(size - 1), "--ret", "full"],
                 Want(kind="failed", ret="full", capped=True))
    check_notice(["--max-return", str(size)], Want(kind="failed"))
    big = ["--pad", str(DEFAULT_MAX_RETURN + 1000)]
    _, raw = check_notice(big, Want(kind="failed", capped=True))
    check(len(raw) < 64 * 1024, "a notice about a 1 MiB original stays small", len(raw))
    check(("was %d octets, more than the %d returned in full" %
           (len(original_of(big)), DEFAULT_MAX_RETURN)).encode() in
          re.sub(rb"\s+", b" ", raw), "the human part gives the sizes")

    # A diagnostic longer than a header line is folded, not cut short.
    _, raw = run_sample(["--long-diag"])
    check_lines(raw, "--long-diag")
    for pname, policy in POLICIES:
        d = dict(status_groups(raw, policy)[1])["diagnostic-code"]
        words = d.split(" ")
        check_eq(words[:6], ["smtp;", "550", "5.1.1", "<bob0@example.net>:", "word35", "word42"],
                 "long Diagnostic-Code (%s) starts as sent" % pname)
        check(len(d) > 1400 and all(re.fullmatch(r"word\d+", x) for x in words[4:]),
              "long Diagnostic-Code (%s) folded at spaces, not cut" % pname, d[-80:])
    check(raw.count(b"\r\n word") >= 15, "the long diagnostic is folded", raw.count(b"\r\n word"))

    hostile_cases()


if __name__ == "__main__":
    sh.run_main(body)
