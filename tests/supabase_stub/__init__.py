"""A Supabase stand-in for tests and benchmarks: PostgREST and Storage subsets on a real
PostgreSQL database and a temporary folder, with injectable faults (see server.py)."""

from tests.supabase_stub.faults import Fault, Faults
from tests.supabase_stub.server import DEFAULT_KEY, SupabaseStub

__all__ = ["DEFAULT_KEY", "Fault", "Faults", "SupabaseStub"]
