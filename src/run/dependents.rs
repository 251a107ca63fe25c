//! Dependents of finished steps lose a dependency: the one statement for it.

/// An UPDATE of the dependents, in run `$run`, of the steps in `$finished`, a relation with columns
/// `flow_slug, step_slug, output, skipped`. Each dependent loses one dependency per
/// finished step; a dependent map step learns its size: the length of its dependency's array
/// output, or 0 when the dependency was skipped. Returns each dependent's `status`,
/// `remaining_deps` and `initial_tasks`.
macro_rules! dependents_lose_dependency {
    // One finished step: each dependent loses one dependency; no grouping, so the planner
    // joins the dependents by key.
    (one $finished:literal, $run:literal) => {
        dependents_lose_dependency!(@update $run,
            "(SELECT d.step_slug, 1 AS deps, ", dependents_lose_dependency!(@map_size), " AS map_size
              FROM ", $finished, " f
              JOIN pgflow.deps d ON d.flow_slug = f.flow_slug AND d.dep_slug = f.step_slug)")
    };
    ($finished:literal, $run:literal) => {
        dependents_lose_dependency!(@update $run,
            "(SELECT d.step_slug, count(*)::int AS deps,
                     max(", dependents_lose_dependency!(@map_size), ") AS map_size
              FROM ", $finished, " f
              JOIN pgflow.deps d ON d.flow_slug = f.flow_slug AND d.dep_slug = f.step_slug
              GROUP BY d.step_slug)")
    };
    // A dependent map step's size from one finished step `f`.
    (@map_size) => {
        "CASE WHEN f.skipped THEN 0
              WHEN jsonb_typeof(f.output) = 'array' THEN jsonb_array_length(f.output) END"
    };
    (@update $run:literal, $($lost:expr),+) => {
        concat!(
            "UPDATE pgflow.step_states child
             SET remaining_deps = child.remaining_deps - lost.deps,
                 initial_tasks = CASE WHEN cs.step_type = 'map' AND child.initial_tasks IS NULL
                                      THEN lost.map_size ELSE child.initial_tasks END
             FROM ", $($lost),+, " lost, pgflow.steps cs
             WHERE child.run_id = ", $run, " AND child.step_slug = lost.step_slug
               AND cs.flow_slug = child.flow_slug AND cs.step_slug = child.step_slug
             RETURNING child.status, child.remaining_deps, child.initial_tasks"
        )
    };
}
