"""Every archived message says which bridge and network it came from."""

from __future__ import annotations

from datetime import UTC, datetime

from listener.core import models
from listener.core.networks import origin

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _message() -> models.ArchivedMessage:
    return models.ArchivedMessage(
        event_id="$e", room_id="!r", room_name=None, sender="@s", sender_display_name=None,
        timestamp=T0, message_type="m.text", content_json="{}", content_raw=None, body="hi",
        whatsapp_message_id="120363@g.us:4915@s.whatsapp.net:3EB0", whatsapp_chat_id="120363@g.us",
        whatsapp_sender_id="4915", part_id="", bridge_id="", bridge_rowid=7, room_type="",
        reply_to_event_id=None, thread_root_event_id=None, has_matrix_event=True,
    )  # fmt: skip


def test_whatsapp_keeps_its_columns_and_gains_the_neutral_ones() -> None:
    labelled = origin.WHATSAPP.label(_message())
    assert (labelled.bridge, labelled.network) == ("whatsapp", "whatsapp")
    assert (
        labelled.network_message_id
        == labelled.whatsapp_message_id
        == ("120363@g.us:4915@s.whatsapp.net:3EB0")
    )
    assert labelled.network_chat_id == labelled.whatsapp_chat_id == "120363@g.us"
    assert labelled.network_sender_id == labelled.whatsapp_sender_id == "4915"


def test_another_network_fills_only_the_neutral_columns() -> None:
    signal = origin.for_bridge("signal-home", "signal")
    labelled = signal.label(_message())
    assert (labelled.bridge, labelled.network) == ("signal-home", "signal")
    assert labelled.network_chat_id == "120363@g.us"
    assert (labelled.whatsapp_message_id, labelled.whatsapp_chat_id) == (None, None)
    assert labelled.whatsapp_sender_id is None


def test_labelling_twice_changes_nothing() -> None:
    # The pipeline bisects a rejected batch and writes the halves: they are labelled again.
    signal = origin.for_bridge("signal-home", "signal")
    once = signal.label(_message())
    assert signal.label(once) == once


def test_unknown_or_undetected_networks() -> None:
    assert origin.for_bridge("x", None).network == "whatsapp"
    assert origin.for_bridge("x", "discord").network == "generic"


def test_a_batch_is_labelled_message_by_message() -> None:
    batch = models.ArchiveBatch(messages=[_message(), _message()], cursor=3)
    labelled = origin.WHATSAPP.label_batch(batch)
    assert [m.network for m in labelled.messages] == ["whatsapp", "whatsapp"]
    assert labelled.cursor == 3
    empty = models.ArchiveBatch(cursor=4)
    assert origin.WHATSAPP.label_batch(empty) is empty
