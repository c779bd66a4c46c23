"""Loaded by every Python process that `tools.grade` starts for a submission (it is first on their
PYTHONPATH); it acts only in the notebook's kernel, where the learner's code runs.

There it adds an audit hook (PEP 578) that refuses, with PermissionError:
- writing, creating, deleting, renaming or changing the mode of any file outside the submission's
  own folder (SGD_GRADE_WRITABLE), whatever the path says after symbolic links are resolved;
- connecting or sending through an internet socket (IPv4 or IPv6), or looking up a host name;
- starting another program (subprocess, os.system, exec, spawn, fork), except those named in
  SGD_GRADE_PROGRAMS (the grader names `dot`, which draws lesson 00's diagram);
- walking the garbage collector's objects (the way to reach this hook and change it).

This is a guard against mistakes and naive hostility, not a security boundary: code that loads C
functions through ctypes goes around it. The grader adds what the operating system gives without
privileges: an empty network namespace where `unshare` allows one, a time limit on the whole
process group, and limits on file size and open files.
"""

import os
import sys


def _install() -> None:
    roots = tuple(os.path.realpath(p) for p in os.environ.get("SGD_GRADE_WRITABLE", "").split(os.pathsep) if p)
    allowed_devices = ("/dev/null", "/dev/shm/", "/dev/pts/", "/dev/tty")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    # event -> the positions of its arguments that name files it changes (a copy reads its source)
    path_events = {
        "os.remove": (0,),
        "os.rmdir": (0,),
        "os.rename": (0, 1),
        "os.truncate": (0,),
        "os.chmod": (0,),
        "os.chown": (0,),
        "os.link": (1,),
        "os.symlink": (1,),
        "os.mkdir": (0,),
        "os.utime": (0,),
        "os.chflags": (0,),
        "os.lchflags": (0,),
        "os.setxattr": (0,),
        "os.removexattr": (0,),
        "shutil.rmtree": (0,),
        "shutil.move": (0, 1),
        "shutil.copyfile": (1,),
        "shutil.copytree": (1,),
        "shutil.chown": (0,),
    }
    program_events = {"subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty"}
    programs = frozenset(os.environ.get("SGD_GRADE_PROGRAMS", "").split())
    internals = {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook"}
    realpath, fspath, fsdecode = os.path.realpath, os.fspath, os.fsdecode
    sep = os.sep

    def inside(path) -> bool:
        try:
            real = realpath(fsdecode(fspath(path)))
        except (TypeError, ValueError):
            return False
        if real.startswith(allowed_devices):
            return True
        return any(real == r or real.startswith(r + sep) for r in roots)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writes = any(c in str(mode or "") for c in "wax+") or bool(isinstance(flags, int) and flags & write_flags)
            if writes and not inside(path):
                raise PermissionError(f"grading: writing outside the submission's folder is refused: {path}")
        elif event in path_events:
            for arg in (args[i] for i in path_events[event] if i < len(args)):
                if isinstance(arg, (str, bytes, os.PathLike)) and not inside(arg):
                    raise PermissionError(f"grading: changing files outside the submission's folder is refused: {arg}")
        elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):  # binding reaches no one
            family = getattr(args[0], "family", None)
            if family is not None and int(family) in (2, 10):  # AF_INET, AF_INET6
                raise PermissionError("grading: the network is cut off")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            raise PermissionError("grading: the network is cut off")
        elif event == "subprocess.Popen":
            executable, argv = args[0], args[1]  # a command line as one string may hold anything: refused
            names = (
                [] if isinstance(argv, (str, bytes)) or not argv else [argv[0], *([executable] if executable else [])]
            )
            if not names or any(os.path.basename(fsdecode(fspath(n))) not in programs for n in names):
                raise PermissionError("grading: starting other programs is refused")
        elif event in program_events:
            raise PermissionError("grading: starting other programs is refused")
        elif event in internals:
            raise PermissionError(f"grading: {event} is refused")

    sys.addaudithook(hook)


# sys.argv is not set yet while `site` imports this module; sys.orig_argv is the command line
if "ipykernel_launcher" in " ".join(getattr(sys, "orig_argv", sys.argv)) and os.environ.get("SGD_GRADE_WRITABLE"):
    _install()
del _install
