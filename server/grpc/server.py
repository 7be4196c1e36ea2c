"""The gRPC front end: one ``grpc.aio`` server carrying KServe V2, ``cnnserve.v1``, health and
reflection, with the message limits of the settings."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from cnnserve.generated import POOL
from cnnserve.generated.cnnserve.v1 import service_pb2 as v1_pb
from cnnserve.generated.cnnserve.v1 import service_pb2_grpc as v1_pb_grpc
from cnnserve.generated.inference import grpc_service_pb2 as pb
from cnnserve.generated.inference import grpc_service_pb2_grpc as pb_grpc
from cnnserve.server.dataplane import DataPlane
from cnnserve.server.grpc.cnnserve_v1 import CnnServeServicer
from cnnserve.server.grpc.kserve_v2 import InferenceServicer
from cnnserve.server.metrics import Metrics
from cnnserve.server.security.restrictions import RestrictedProtocols
from cnnserve.server.security.tls import CertificateStore
from cnnserve.server.services.classifier import Classifier
from cnnserve.server.services.policy import PolicyService
from cnnserve.server.settings import Settings


def grpc_options(settings: Settings, reuse_port: bool = False) -> list[tuple[str, int]]:
    s = settings
    options = [
        ("grpc.max_receive_message_length", s.max_message_bytes),
        ("grpc.max_send_message_length", s.max_message_bytes),
        # A second server on a taken port must fail, not share it; the workers of one server
        # share theirs (the supervisor checked that it was free and holds it meanwhile).
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        ("grpc.max_concurrent_streams", s.grpc_max_concurrent_streams),
        ("grpc.keepalive_time_ms", s.grpc_keepalive_time),
        ("grpc.keepalive_timeout_ms", s.grpc_keepalive_timeout),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", s.grpc_min_ping_interval),
        ("grpc.http2.max_ping_strikes", s.grpc_http2_max_ping_strikes),
        ("grpc.max_connection_age_grace_ms", s.grpc_max_connection_age_grace),
    ]
    # gRPC's own "never" for these is its default (INT_MAX), not 0.
    if s.grpc_max_connection_idle:
        options.append(("grpc.max_connection_idle_ms", s.grpc_max_connection_idle))
    if s.grpc_max_connection_age:
        options.append(("grpc.max_connection_age_ms", s.grpc_max_connection_age))
    return options


def reflection_pool() -> descriptor_pool.DescriptorPool:
    """Our stubs live in a private pool (see cnnserve/protogen.py); reflection must also describe
    health and itself, whose descriptors live in protobuf's default pool, so copy them over."""
    for module in (health_pb2, reflection_pb2):
        try:
            POOL.FindFileByName(module.DESCRIPTOR.name)
        except KeyError:
            POOL.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return POOL


def build(
    settings: Settings,
    plane: DataPlane,
    classifier: Classifier,
    policies: PolicyService,
    metrics: Metrics,
    health_servicer: health.aio.HealthServicer,
    *,
    reuse_port: bool = False,
    tls: CertificateStore | None = None,
) -> tuple[grpc.aio.Server, int]:
    """The server with every service added and its port bound (not started), with TLS where
    ``tls`` is given; returns it and the port it got. Raises OSError when the port cannot be
    bound."""
    interceptors = [RestrictedProtocols(settings.grpc_restricted_protocol)] if settings.grpc_restricted_protocol else []
    server = grpc.aio.server(
        options=grpc_options(settings, reuse_port),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
        interceptors=interceptors,
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(plane, metrics), server)
    v1_pb_grpc.add_CnnServeServicer_to_server(CnnServeServicer(plane, classifier, policies, metrics), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = (
        pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        v1_pb.DESCRIPTOR.services_by_name["CnnServe"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(services, server, pool=reflection_pool())
    address = f"{settings.host}:{settings.grpc_port}"
    port = server.add_secure_port(address, tls.grpc_credentials()) if tls else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {settings.host}:{settings.grpc_port} (in use?)")
    return server, port
