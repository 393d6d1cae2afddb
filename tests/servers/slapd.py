"""A real OpenLDAP slapd on loopback ports, seeded with a small organisation, for LDAP tests.

`Slapd` writes a `slapd.conf` (mdb backend, memberof overlay, cn=Monitor) into a temporary
directory, starts slapd in the foreground, waits until it answers a bind, and seeds it over
LDAP (so that the memberof overlay sees every group write, which `slapadd` would bypass):

    with Slapd(require_binary("slapd", "/usr/sbin/slapd"), tmp_path) as slapd:
        config = LdapConfig(url=slapd.url, user_search_base=slapd.people, ...)

With `tls=True` it also serves LDAPS and StartTLS with a certificate for 127.0.0.1, signed by
a throwaway CA generated with `cryptography` (`ca_file`); `untrusted_ca_file` holds a CA that
did not sign it. `bind_count()` reads how many binds slapd has completed from cn=Monitor, so a
test can prove that a cached login never reached the server. Nothing leaves the machine.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support import free_port

BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
SERVICE_DN = f"cn=gateway,ou=services,{BASE_DN}"
SERVICE_PASSWORD = "gateway-secret"

_SCHEMA_DIRS = ("/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema")
_MODULE_DIRS = (
    "/usr/lib/ldap",
    "/usr/lib/openldap",
    "/usr/lib64/openldap",
    "/usr/libexec/openldap",
)
_START_DEADLINE_S = 15.0


@dataclass(frozen=True)
class Person:
    """A seeded user: an inetOrgPerson under ou=people."""

    uid: str
    cn: str
    mail: str
    department: str
    title: str
    password: str
    parent: str = PEOPLE

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{self.parent}"


ALICE = Person("alice", "Alice Liddell", "alice@example.org", "R&D", "ML Engineer", "wonder-1")
BOB = Person("bob", "Bob Marley", "bob@example.org", "Finance", "Analyst", "b0b-pass")
CAROL = Person("carol", "Carol Danvers", "carol@example.org", "Vendors", "Consultant", "c4r0l!")
DAVE = Person("dave", "Dave Bowman", "dave@example.org", "Space", "Commander", "open-pod-bay")
ERIN = Person("erin", "Erin Brockovich", "erin@example.org", "Legal", "Clerk", "pg&e")
PEOPLE_SEEDED = (ALICE, BOB, CAROL, DAVE, ERIN)
# An account filed under bob's entry: the DN "uid=robot,uid=bob,ou=people,..." is what an
# unescaped username "robot,uid=bob" would make of the template "uid={username},ou=people,...".
ROBOT = Person("robot", "Bob's Robot", "robot@example.org", "Finance", "Bot", "beep", BOB.dn)

# name -> members (person uids, or "group:<name>" for a nested group), in insertion order: the
# memberof overlay sets memberOf on members that exist when the group is written, so inner
# groups come first. The two "loop" groups contain each other (closed by a modify below).
_GROUP_TREE: dict[str, tuple[str, ...]] = {
    "ml-platform": ("alice",),
    "engineering": ("group:ml-platform", "erin"),
    "finance": ("bob",),
    "contractors": ("carol",),
    "loop-a": ("erin",),
    "loop-b": ("group:loop-a",),
}


def group_dn(name: str) -> str:
    """The DN of a seeded group."""
    return f"cn={name},{GROUPS}"


class Slapd:
    """A seeded slapd process in `workdir`; a context manager that starts and stops it."""

    def __init__(self, binary: str, workdir: Path, *, tls: bool = False) -> None:
        self.binary = binary
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.ca_file = str(workdir / "ca.pem") if tls else None
        self.untrusted_ca_file = str(workdir / "untrusted-ca.pem") if tls else None
        self._process: subprocess.Popen[bytes] | None = None
        self._monitor: ldap3.Connection | None = None
        self._log = workdir / "slapd.log"

    @property
    def url(self) -> str:
        """The plain LDAP URL (StartTLS-capable when started with tls=True)."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        """The LDAPS URL; only with tls=True."""
        assert self.ldaps_port is not None, "started without tls"
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def __enter__(self) -> Slapd:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        if self.tls:
            _write_certificates(self.workdir)
        (self.workdir / "slapd.conf").write_text(self._config())
        self.start()
        try:
            self._seed()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start slapd (again after `stop`: same data, same ports); returns once it binds."""
        urls = " ".join(
            [f"ldap://127.0.0.1:{self.port}/"]
            + ([f"ldaps://127.0.0.1:{self.ldaps_port}/"] if self.tls else [])
        )
        log = self._log.open("ab")
        # -d keeps slapd in the foreground (no fork), so this Popen is the server itself.
        self._process = subprocess.Popen(
            [self.binary, "-f", str(self.workdir / "slapd.conf"), "-h", urls, "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_until_ready()

    def stop(self) -> None:
        """Stop slapd; a no-op when it is not running."""
        if self._monitor is not None:
            self._monitor.unbind()
            self._monitor = None
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    @contextmanager
    def admin(self) -> Iterator[ldap3.Connection]:
        """A connection bound as the directory's root DN, unbound on the way out.

        (ldap3's own `with connection:` leaves an auto-bound connection open.)
        """
        connection = self._admin_connection()
        try:
            yield connection
        finally:
            connection.unbind()

    def _admin_connection(self) -> ldap3.Connection:
        return ldap3.Connection(
            ldap3.Server(self.url, get_info=ldap3.NONE),
            ADMIN_DN,
            ADMIN_PASSWORD,
            auto_bind=True,
            receive_timeout=5,
        )

    def bind_count(self) -> int:
        """How many binds slapd has completed since it started (from cn=Monitor).

        Read over one long-lived admin connection, so reading adds no binds of its own.
        """
        if self._monitor is None:
            self._monitor = self._admin_connection()
        self._monitor.search(
            "cn=Bind,cn=Operations,cn=Monitor",
            "(objectClass=*)",
            ldap3.BASE,
            attributes=["monitorOpCompleted"],
        )
        return int(self._monitor.entries[0].monitorOpCompleted.value)

    def set_password(self, uid: str, password: str) -> None:
        """Replace a user's password, as an administrator would."""
        with self.admin() as conn:
            conn.modify(
                f"uid={uid},{PEOPLE}",
                {"userPassword": [(ldap3.MODIFY_REPLACE, [_ssha(password)])]},
            )
            assert conn.result["result"] == 0, conn.result

    def _config(self) -> str:
        schema_dir = _first_existing(_SCHEMA_DIRS, "core.schema")
        module_dir = _first_existing(_MODULE_DIRS, "back_mdb.so")
        tls = (
            f"TLSCACertificateFile {self.workdir / 'ca.pem'}\n"
            f"TLSCertificateFile {self.workdir / 'server.pem'}\n"
            f"TLSCertificateKeyFile {self.workdir / 'server-key.pem'}\n"
            if self.tls
            else ""
        )
        return f"""\
include {schema_dir}/core.schema
include {schema_dir}/cosine.schema
include {schema_dir}/inetorgperson.schema
modulepath {module_dir}
moduleload back_mdb.so
moduleload memberof.so
pidfile {self.workdir / "slapd.pid"}
argsfile {self.workdir / "slapd.args"}
{tls}
database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {self.workdir / "data"}
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to * by * read

database monitor
access to * by dn.exact="{ADMIN_DN}" read by * none
"""

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + _START_DEADLINE_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"slapd exited with {self._process.returncode}: {self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                # Paces the poll and notices an early exit at the same time.
                try:
                    self._process.wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    pass
                continue
            # Listening is not serving yet; a root bind is.
            try:
                with self.admin():
                    return
            except ldap3.core.exceptions.LDAPException:
                continue
        self.stop()
        raise RuntimeError(f"slapd did not answer within {_START_DEADLINE_S}s: {self._tail()}")

    def _tail(self) -> str:
        return self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""

    def _seed(self) -> None:
        with self.admin() as conn:

            def add(dn: str, classes: list[str], attributes: dict[str, object]) -> None:
                conn.add(dn, classes, attributes)
                assert conn.result["result"] == 0, (dn, conn.result)

            add(BASE_DN, ["dcObject", "organization"], {"o": "Example", "dc": "example"})
            for ou in ("people", "groups", "services"):
                add(f"ou={ou},{BASE_DN}", ["organizationalUnit"], {"ou": ou})
            add(
                SERVICE_DN,
                ["applicationProcess", "simpleSecurityObject"],
                {"cn": "gateway", "userPassword": _ssha(SERVICE_PASSWORD)},
            )
            for person in (*PEOPLE_SEEDED, ROBOT):
                add(
                    person.dn,
                    ["inetOrgPerson"],
                    {
                        "uid": person.uid,
                        "cn": person.cn,
                        "sn": person.cn.split()[-1],
                        "mail": person.mail,
                        "departmentNumber": person.department,
                        "title": person.title,
                        "userPassword": _ssha(person.password),
                    },
                )
            for name, members in _GROUP_TREE.items():
                add(group_dn(name), ["groupOfNames"], {"cn": name, "member": _dns(members)})
            # Close the loop: loop-a also contains loop-b, which already contains loop-a.
            conn.modify(group_dn("loop-a"), {"member": [(ldap3.MODIFY_ADD, [group_dn("loop-b")])]})
            assert conn.result["result"] == 0, conn.result


def _dns(members: tuple[str, ...]) -> list[str]:
    return [
        group_dn(m.removeprefix("group:")) if m.startswith("group:") else f"uid={m},{PEOPLE}"
        for m in members
    ]


def _ssha(password: str) -> str:
    """The password as slappasswd's default {SSHA} hash (salted SHA-1), so binds are real."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _first_existing(directories: tuple[str, ...], marker: str) -> str:
    for directory in directories:
        if (Path(directory) / marker).exists():
            return directory
    raise RuntimeError(f"no {marker} in any of {directories}: is OpenLDAP's slapd installed?")


def _write_certificates(workdir: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 it signs, and an unrelated CA."""
    ca_key, ca_cert = _self_signed_ca("raygate test CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _, untrusted_cert = _self_signed_ca("someone else's CA")
    pem = serialization.Encoding.PEM
    (workdir / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (workdir / "untrusted-ca.pem").write_bytes(untrusted_cert.public_bytes(pem))
    (workdir / "server.pem").write_bytes(server_cert.public_bytes(pem))
    (workdir / "server-key.pem").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def _self_signed_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert
