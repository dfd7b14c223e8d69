"""Agent: the learned Q-table, how it learned, its recent steps, and what it would do now for each open incident."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from console.services import runtime_or_stop
from engine.errors import SelfhealError
from engine.feedback.agent_view import AgentView, agent_view, attempts_note, checkpoint_frame, learners
from engine.feedback.summaries import learners_phrase

settings, runtime = runtime_or_stop()
st.title(":material/psychology: Agent", anchor=False)
st.caption("The Q-learning policy chooses a recovery action from what the analysis layer sees of an incident "
           "(its signature, whether the root stage is failing, the warehouse queue). Train it in the twin with "
           "`selfheal train --episodes 1000`; with `selfheal agent --policy qlearning` it keeps learning live.")


def heatmap(view: AgentView) -> go.Figure:
    q = view.q_table
    text = [[f"{v:.1f} (n={n})" if pd.notna(v) else "untried" for v, n in zip(row, nrow, strict=True)]
            for row, nrow in zip(q.to_numpy(), view.visits.to_numpy(), strict=True)]
    fig = go.Figure(go.Heatmap(z=q.to_numpy(), x=list(q.columns), y=list(q.index), colorscale="RdYlGn",
                               hovertext=text, hoverinfo="text+x+y", colorbar={"title": "Q"}))
    fig.update_layout(height=max(320, 26 * len(q.index) + 140), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis={"side": "top", "tickangle": -30})
    return fig


def learning_curve(view: AgentView) -> go.Figure:
    c = view.curve
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=c["episode"], y=c["reward"], name="reward (mean)", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=c["episode"], y=c["mttr_minutes"], name="MTTR min (mean)", mode="lines+markers"),
                  secondary_y=True)
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title="training episode")
    fig.update_yaxes(title_text="reward", secondary_y=False)
    fig.update_yaxes(title_text="MTTR (min)", secondary_y=True)
    return fig


try:
    view = agent_view(runtime.store)
except SelfhealError as e:
    st.error(f"Could not read the agent's state from the store: {e}", icon=":material/database_off:")
    st.info("Check that the store is reachable, then reload the page.", icon=":material/lightbulb:")
    st.stop()

t = view.training
c1, c2, c3, c4 = st.columns(4)
c1.metric("States seen", len(view.q_table.index))
c2.metric("Q-values learned", int(view.q_table.notna().sum().sum()))
c3.metric("Episodes trained", t.get("episodes", 0), help="In the last training run.")
c4.metric("Transitions recorded", view.transitions_total,
          help="The learned policy's steps recorded in this store (live, and the recent ones of its last "
               "training); the runbook's steps are in the audit log.")

if view.q_table.empty:
    st.info("No Q-table in this store yet. Train one: `selfheal train --episodes 1000` (about half a minute).",
            icon=":material/model_training:")
    st.stop()

st.subheader("What the policy would do now", anchor=False)
if not view.choices:
    st.success("No open incidents.", icon=":material/check_circle:")
for oc in view.choices:
    inc = oc.incident
    where = inc.stage.value if inc.stage else "unknown stage"
    with st.expander(f"#{inc.id} {inc.pipeline_id} · {inc.error_type.replace('_', ' ')} at {where} → "
                     f"**{oc.choice.action.value}**", expanded=True):
        st.caption(f"State `{oc.state}` · {oc.choice.reason}")
        qs = pd.DataFrame({"action": [a.value for a in oc.choice.q_values],
                           "Q": list(oc.choice.q_values.values())}).sort_values("Q", ascending=False)
        st.dataframe(qs, hide_index=True, width="stretch",
                     column_config={"Q": st.column_config.NumberColumn("Q-value", format="%.2f")})

st.subheader("Q-table", anchor=False)
st.caption("Rows are states (signature | failing or slow | warehouse queue), columns actions; green is better. "
           "n is how often the action was tried there (a table trained by several learners shows one learner's "
           "share, the mean). Blank cells were never tried in that state.")
st.plotly_chart(heatmap(view), key="agent_heatmap")

st.subheader("Learning curve", anchor=False)
if view.curve.empty:
    st.info("No training run recorded in this store.", icon=":material/info:")
else:
    each = learners_phrase(learners(t), t.get("fallback"), t.get("averaged") or ())
    st.caption(f"Last training run: {t.get('episodes')} episodes{each} in {t.get('seconds')} s "
               f"(seed {t.get('seed')}); means per 50 episodes{' of learner 0' if each else ''}; an episode not "
               "recovered within the horizon counts 240 min.")
    st.plotly_chart(learning_curve(view), key="agent_curve")
    checkpoints = checkpoint_frame(t)
    if not checkpoints.empty:
        st.caption("Checkpoints: the greedy policy scored on training-side validation episodes (MTTR relative to "
                   "the oracle's, averaged over fault families; lower is better). The kept table is the best.")
        st.dataframe(checkpoints, hide_index=True, width="stretch", key="agent_checkpoints")
    if note := attempts_note(t):
        st.caption(note)

st.subheader("Recent transitions", anchor=False)
if view.transitions.empty:
    st.info("No transitions recorded yet.", icon=":material/info:")
else:
    st.dataframe(view.transitions, hide_index=True, width="stretch",
                 column_config={"ts": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm"),
                                "reward": st.column_config.NumberColumn("Reward", format="%.1f"),
                                "q_before": st.column_config.NumberColumn("Q before", format="%.2f"),
                                "q_after": st.column_config.NumberColumn("Q after", format="%.2f")})
