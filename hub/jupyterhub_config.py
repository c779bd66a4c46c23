# The demo class's JupyterHub, as `make hub` (python -m tools.hub start) runs it on this machine.
#
# Everything comes from the hub's state folder ($SGD_HUB_DIR, default build/hub), which `tools.hub`
# fills before it starts the hub: hub.json (ports, the learners' shared password, the proxy's and the
# class tools' tokens; mode 0600), the database, the cookie secret, the learners' homes.
#
# What is a demo here, and what a real class's hub uses instead (see README, "A class on one server"):
# - authentication: SharedPasswordAuthenticator (one password for the class, any user name), on
#   loopback only: fine for a workshop on a private machine. A class that outlives a day uses
#   the institution's login: OAuthenticator (GitHub, Google, an OIDC/Keycloak/Azure AD provider), LTI
#   from the learning platform (ltiauthenticator), or on The Littlest JupyterHub NativeAuthenticator or
#   FirstUseAuthenticator; and HTTPS in front.
# - the spawner: SimpleLocalProcessSpawner runs each learner's server as a local process of the hub's
#   own user, with a home folder of its own under the state folder: no isolation between learners.
#   The shared data is protected all the same: tools.hub makes it read-only (its permissions, and a
#   read-only bind mount when the hub runs as root, whom permissions do not stop). A real hub gives
#   each learner an account or a container: The Littlest JupyterHub (system users, SystemdSpawner,
#   memory and CPU limits) or Zero to JupyterHub (one pod per learner, KubeSpawner: see deploy/).
import json
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

STATE = Path(os.environ["SGD_HUB_DIR"]).resolve()
settings = json.loads((STATE / "hub.json").read_text())

c.JupyterHub.bind_url = f"http://127.0.0.1:{settings['port']}"  # what learners open (the proxy)
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings['hub_port']}"  # the hub itself, behind the proxy
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "hub.pid")

# The proxy runs on its own (tools.hub starts it first): learners' open notebooks keep working while
# the hub restarts, and their servers stay up (cleanup_servers), as on The Littlest JupyterHub.
c.JupyterHub.proxy_class = "configurable-http-proxy"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings['proxy_api_port']}"
c.ConfigurableHTTPProxy.auth_token = settings["proxy_token"]
c.JupyterHub.cleanup_servers = False

# A workshop's login: any name, one password for the class; the instructor is admin with a password of their own.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = settings["password"]
c.SharedPasswordAuthenticator.admin_password = settings["admin_password"]
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {settings["instructor"]}

# The class tools (tools.hub stop, the tests) use this service's token: users, servers, tokens.
c.JupyterHub.services = [{"name": "class-tools", "api_token": settings["tools_token"]}]
c.JupyterHub.load_roles = [
    {
        "name": "class-tools",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers", "read:hub"],
        "services": ["class-tools"],
    }
]

c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "homes" / "{username}")
c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]  # the course's shared environment
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []  # the simple spawner runs them as the hub's user
# Kernels talk to their server over Unix sockets, not TCP ports. A TCP port is picked free a moment before
# the kernel binds it; with a whole class's kernels and connections starting at once, another process can
# take it in between ("Address already in use"), and jupyter_client's restarts retry the same cached ports
# until it gives the kernel up: a learner's notebook then has no kernel. Sockets are files in the kernel's
# runtime folder, named after the kernel, so two kernels never want the same one.
c.Spawner.args += ["--KernelManager.transport=ipc"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 300  # a whole class starting at once on a small machine
c.Spawner.http_timeout = 300
c.Spawner.environment = {
    # every learner reads the one shared data folder and never writes to it
    "SGD_DATA": settings["learners_data"],
    "SGD_DATA_READONLY": "1",
    "SGD_DATA_ADMIN": settings["admin_contact"],
    # one torch thread per kernel: thirty kernels on a few cores must not fight over them
    "OMP_NUM_THREADS": "1",
    # every process of this hub carries it, so that `make hub-stop` can find and stop them all
    "SGD_HUB_DIR": str(STATE),
    # Jupyter's own files (kernels' connection files, notebook trust) outside the home folder: a learner
    # whose home is full still opens and runs the lessons, and only saving says that the disk is full
    "JUPYTER_DATA_DIR": lambda spawner: str(STATE / "jupyter" / spawner.user.name),
    # the kernels' connection files and sockets: a short path of tools.hub's (a Unix socket's path has at
    # most 107 characters), one folder per learner, by the learner's number rather than their name
    "JUPYTER_RUNTIME_DIR": lambda spawner: str(Path(settings["runtime"]) / str(spawner.user.id)),
}
