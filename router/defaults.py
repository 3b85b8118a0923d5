"""The embedded default configuration used when no ``-c FILE`` is given."""

DEFAULT_CONFIG_NAME = "<embedded default config>"
#: Where ``dsrouter send`` sends without HOST:PORT: the embedded default's listeners.
DEFAULT_SEND_TARGET = "127.0.0.1:5514"

DEFAULT_CONFIG = """\
# dsrouter's embedded default: no root needed, everything under the working directory.
settings {
  data_dir = "./dsrouter-data"
}

input udp_in { type = "udp", listen = "127.0.0.1:5514" }
input tcp_in { type = "tcp", listen = "127.0.0.1:5514" }

output archive { type = "file", path = "archive/{date}/{module}.jsonl" }

route archive_everything {
  to archive
}
"""
