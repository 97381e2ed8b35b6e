"""What ``speeddata serve`` offers. `Service` (`speeddata.serving.service`) answers every
request whatever the transport; the transports only translate: gRPC
(`speeddata.serving.grpc_api`, guarded by `grpc_guard`), the REST API
(`speeddata.serving.rest`) and the pages and live WebSocket (`speeddata.serving.web_app`,
guarded by `web_guard`). `Server` (`speeddata.serving.server`) is the process that puts the
supervisor, the hub, the service and the transports on one event loop."""

from .server import Server
from .service import ChannelInfo, Service

__all__ = ["ChannelInfo", "Server", "Service"]
