"""dsrouter: a plugin-based syslog router for Trend Micro Deep Security events.

Data flows through the modules in this order (each imports only from earlier ones):
``transport`` (sockets, framing) → ``syslog`` (envelope) → ``ds`` (CEF/LEEF, the normalized
event) → ``dsl`` (config language, checker, compiler) → ``dispatch`` (outputs, delivery)
→ ``plugin`` (hooks) → ``daemon`` / ``cli``.
"""

__version__ = "0.1.0"
