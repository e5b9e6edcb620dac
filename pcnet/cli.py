"""The `pcnet` console command: administration that happens outside a running server.

    pcnet init --data-dir DIR          a new data directory: config, database, CA, first admin
    pcnet import-users --config F CSV  create or update users from CSV
    pcnet import-printers --config F CSV
    pcnet token create --config F NAME a new API token, printed once
    pcnet nodes list|invite|approve|reject|delete --config F [NAME]
                                       node enrolment (an invitation's code is printed once)
    pcnet analyse FILE...              spool file analysis, one JSON object per file
    pcnet cups install|uninstall|wrap|unwrap|list   (pcnet cups --help)

Every failure is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from pcnet.errors import PcnetError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pcnet", description="pcnet print management administration")
    sub = p.add_subparsers(dest="command", required=True)

    init = sub.add_parser("init", help="create a data directory with config, database, CA and first admin")
    init.add_argument("--data-dir", required=True)
    init.add_argument("--database", default=None, help="database URL (default: embedded SQLite)")
    init.add_argument("--admin", default="admin", help="first administrator's username")
    init.add_argument("--host", action="append", default=None,
                      help="name or address the server certificate is valid for (repeatable)")
    init.add_argument("--http", default=None, help="endpoint for plain HTTP + TLS (default tcp:9191)")
    init.add_argument("--tls", default=None, help="endpoint for TLS only (default tcp:9192)")
    init.add_argument("--if-missing", action="store_true",
                      help="do nothing (and succeed) if the data directory is already initialised")

    for name, what in (("import-users", "users"), ("import-printers", "printers")):
        imp = sub.add_parser(name, help=f"create or update {what} from a CSV file")
        imp.add_argument("--config", required=True)
        imp.add_argument("csv")

    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="create an API token (printed once)")
    create.add_argument("--config", required=True)
    create.add_argument("name")
    create.add_argument("--user", default=None, help="the administrator the token acts as")

    nodes = sub.add_parser("nodes", help="Print Providers, Site Servers, device gateways: enrol and approve")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", required=True)
    listing = nodes_sub.add_parser("list", help="list nodes and outstanding invitations")
    listing.add_argument("--config", required=True)
    invite = nodes_sub.add_parser("invite", help="issue a one-time enrolment code for a node (printed once)")
    invite.add_argument("--config", required=True)
    invite.add_argument("name")
    invite.add_argument("--role", choices=("provider", "site", "device"), default="provider")
    invite.add_argument("--expires", type=int, default=None, metavar="HOURS",
                        help="hours the code is valid (default 24)")
    invite.add_argument("--approve", action=argparse.BooleanOptionalAction, default=None,
                        help="whether enrolling approves the node at once (default: yes, except for a site)")
    for verb, what in (("approve", "let a node in"), ("reject", "turn a node away"),
                       ("delete", "forget a node and free its name")):
        one = nodes_sub.add_parser(verb, help=what)
        one.add_argument("--config", required=True)
        one.add_argument("name")

    analyse = sub.add_parser("analyse", help="analyse spool files: pages, colour pages, duplex, size")
    analyse.add_argument("files", nargs="+")
    analyse.add_argument("--paper-size", default=None, metavar="SIZE",
                         help="paper of a file that states none, as a provider's [analysis] paper_size (default A4)")

    cups = sub.add_parser("cups", help="CUPS integration: install or uninstall the backend, wrap "
                                       "and unwrap queues (pcnet cups --help)")
    cups.add_argument("cups_args", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cups"]:
        # `pcnet cups` has its own commands and usage (--help included): argparse would
        # answer `pcnet cups --help` with its own, empty, help.
        from pcnet.provider.cupsadmin import cups_command

        return cups_command(argv[1:], sys.stdout, sys.stderr)
    args = _parser().parse_args(argv)
    # What the audit log records as the command of a write made from the server's shell.
    args.command_line = argv
    try:
        if args.command == "analyse":
            from pcnet.spool import analyse_command

            return analyse_command(args.files, sys.stdout, args.paper_size)
        if args.command == "cups":
            from pcnet.provider.cupsadmin import cups_command

            return cups_command(args.cups_args, sys.stdout, sys.stderr)
        from pcnet import admin

        if args.command == "init":
            return admin.run(admin.init, args)
        if args.command == "import-users":
            return admin.run(admin.import_users, args)
        if args.command == "import-printers":
            return admin.run(admin.import_printers, args)
        if args.command == "token":
            return admin.run(admin.create_token, args)
        if args.command == "nodes":
            return admin.run(admin.nodes_command, args)
    except PcnetError as e:
        sys.stderr.write(f"pcnet: {e.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
