"""The live summary reads the agreed metrics, whatever the label spelling, and survives a dead service."""

from __future__ import annotations

from services.launcher.summary import parse_metrics_text, render, summarize

ROUTER = """
# TYPE switchboard_router_contacts_waiting gauge
switchboard_router_contacts_waiting{queue="billing-en"} 4
switchboard_router_contacts_waiting{queue="billing-pl"} 2
switchboard_router_longest_wait_seconds{queue="billing-pl"} 125
switchboard_router_service_level{queue="billing-en"} 0.9
switchboard_router_service_level{queue="billing-pl"} 0.2
switchboard_router_service_level{queue="tech-ru"} NaN
# TYPE switchboard_router_contacts_answered_total counter
switchboard_router_contacts_answered_total{queue="billing-en",within_sl="true"} 27
switchboard_router_contacts_answered_total{queue="billing-en",within_sl="false"} 3
switchboard_router_contacts_answered_total{queue="billing-pl",within_sl="true"} 1
switchboard_router_contacts_answered_total{queue="billing-pl",within_sl="false"} 4
# TYPE switchboard_router_contacts_abandoned_total counter
switchboard_router_contacts_abandoned_total{queue="billing-en"} 10
switchboard_router_agents{state="AGENT_STATE_AVAILABLE"} 3
switchboard_router_agents{state="wrap-up"} 1
switchboard_router_occupancy 0.8
switchboard_consumer_lag{topic="contact.events",partition="0"} 5
switchboard_consumer_lag{topic="agent.events",partition="0"} 2
"""
NOTIFIER = """
# TYPE switchboard_notifier_notifications_total counter
switchboard_notifier_notifications_total{kind="hold_started",channel="sms",outcome="delivered"} 12
switchboard_notifier_notifications_total{kind="closed",channel="email",outcome="DELIVERY_OUTCOME_DEAD_LETTERED"} 1
switchboard_notifier_notifications_total{kind="closed",channel="email",outcome="rejected"} 2
switchboard_notifier_notifications_total{kind="queue_position",channel="sms",outcome="suppressed"} 7
"""


def test_queues_agents_escalations_and_notifications_are_summarised() -> None:
    summary = summarize(
        {
            "router": parse_metrics_text(ROUTER),
            "escalation": parse_metrics_text(
                'switchboard_escalation_open{tier="TIER_MANAGER"} 2\n'
                'switchboard_escalation_open{tier="supervisor"} 1\n'
            ),
            "notifier": parse_metrics_text(NOTIFIER),
        }
    )
    en = next(q for q in summary.queues if q.queue == "billing-en")
    assert (en.waiting, en.answered, en.abandoned) == (4, 30, 10)
    assert en.abandonment == 0.25
    pl = next(q for q in summary.queues if q.queue == "billing-pl")
    assert pl.abandonment == 0.0
    quiet = next(q for q in summary.queues if q.queue == "tech-ru")
    assert (quiet.abandonment, quiet.service_level) == (None, None)  # nobody served yet
    assert summary.agents == {"available": 3, "wrap_up": 1}
    assert summary.occupancy == 0.8
    assert summary.escalations_open == {"manager": 2, "supervisor": 1}
    assert (summary.notifications_sent, summary.notifications_failed) == (12, 3)
    router = next(s for s in summary.services if s.name == "router")
    assert router.lag == 7

    text = "\n".join(render(summary, header="H"))
    assert text.startswith("H\n")
    assert "billing-pl" in text
    assert "2m05s" in text  # longest wait
    assert "20.0%!" in text  # below the service-level target is flagged
    assert "100.0%" not in text  # a queue that has served no one shows "-", not 100 %
    assert "Escalations open: supervisor 1 · manager 2 · head of service 0" in text
    assert "Notifications: sent 12 · failed 3 · suppressed 7" in text


def test_a_service_whose_metrics_do_not_answer_is_shown_down() -> None:
    summary = summarize({"router": None}, {"router": "ConnectionRefusedError"})
    text = "\n".join(render(summary))
    assert "router DOWN (ConnectionRefusedError)" in text
    assert "(no queue metrics yet)" in text


PER_DOMAIN = """
switchboard_router_contacts_waiting{domain="acme",queue="billing-en"} 4
switchboard_router_contacts_waiting{domain="beta",queue="billing-en"} 1
switchboard_router_contacts_waiting{domain="other",queue="billing-en"} 0
switchboard_router_service_level{domain="acme",queue="billing-en"} 0.9
switchboard_router_service_level{domain="beta",queue="billing-en"} 0.5
switchboard_router_service_level{domain="other",queue="billing-en"} NaN
switchboard_router_agents{domain="acme",state="available"} 3
switchboard_router_agents{domain="beta",state="busy"} 1
switchboard_router_agents{domain="other",state="available"} 0
switchboard_router_occupancy{domain="acme"} 0.25
switchboard_router_occupancy{domain="beta"} 1
switchboard_router_occupancy{domain="other"} 0
"""


def test_several_domains_get_a_row_each_and_an_idle_label_is_left_out() -> None:
    summary = summarize({"router": parse_metrics_text(PER_DOMAIN)})
    rows = {(q.domain, q.queue): q for q in summary.queues}
    assert set(rows) == {("acme", "billing-en"), ("beta", "billing-en")}  # "other" is idle
    assert (rows["acme", "billing-en"].service_level, rows["beta", "billing-en"].waiting) == (
        0.9,
        1,
    )
    assert summary.agents == {"available": 3, "busy": 1}
    assert summary.occupancy is None  # two teams' shares are not averaged
    lines = render(summary)
    assert lines[0].startswith("DOMAIN")
    assert any(line.startswith("acme") and "90.0%" in line for line in lines)
    assert any(line.startswith("beta") and "50.0%!" in line for line in lines)
    assert any("occupancy acme 25.0% · beta 100.0%" in line for line in lines)


def test_one_active_domain_shows_the_table_as_before() -> None:
    """`make run`: the demo domain has its own label; "other" exists but is idle."""
    text = "\n".join(line for line in PER_DOMAIN.splitlines() if 'domain="beta"' not in line)
    summary = summarize({"router": parse_metrics_text(text)})
    assert [(q.domain, q.queue) for q in summary.queues] == [("acme", "billing-en")]
    assert summary.occupancy == 0.25
    lines = render(summary)
    assert lines[0].startswith("QUEUE")
    assert any("occupancy 25.0%" in line for line in lines)
