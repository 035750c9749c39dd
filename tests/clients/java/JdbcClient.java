// pgjdbc (Debian's libpostgresql-jdbc-java) against tessera: batches, prepared
// statements past the prepare threshold (named, binary results), transactions,
// SQLSTATEs, and DatabaseMetaData.getTables/getColumns.
// Usage: java -cp /usr/share/java/postgresql.jar JdbcClient.java PORT
import java.math.BigDecimal;
import java.sql.*;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tessera?user=root";
        try (Connection c = DriverManager.getConnection(url)) {
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE j (id INT PRIMARY KEY, name VARCHAR(20), amount NUMERIC(10,2), at TIMESTAMP)");
            }
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("INSERT INTO j VALUES (?, ?, ?, now())")) {
                for (int i = 1; i <= 20; i++) {
                    p.setInt(1, i);
                    p.setString(2, "n" + i);
                    p.setBigDecimal(3, new BigDecimal(i).divide(new BigDecimal(4)));
                    p.addBatch();
                }
                int[] counts = p.executeBatch();
                check(counts.length == 20 && counts[0] == 1, "batch counts " + java.util.Arrays.toString(counts));
            }
            c.commit();
            // Past the prepare threshold (5): a named statement with binary results.
            try (PreparedStatement p = c.prepareStatement("SELECT name, amount FROM j WHERE id = ?")) {
                for (int i = 1; i <= 10; i++) {
                    p.setInt(1, i);
                    try (ResultSet r = p.executeQuery()) {
                        check(r.next(), "row " + i);
                        check(r.getString(1).equals("n" + i), "name " + i);
                        check(r.getBigDecimal(2).compareTo(new BigDecimal(i).divide(new BigDecimal(4))) == 0, "amount " + i);
                    }
                }
            }
            c.commit();
            try (Statement s = c.createStatement()) {
                s.executeUpdate("UPDATE j SET amount = amount + 1 WHERE id = 1");
                c.rollback();
                ResultSet r = s.executeQuery("SELECT amount FROM j WHERE id = 1");
                check(r.next() && r.getBigDecimal(1).compareTo(new BigDecimal("0.25")) == 0, "rolled back");
                c.commit();
            }
            try (Statement s = c.createStatement()) {
                s.executeUpdate("INSERT INTO j (id) VALUES (1)");
                throw new AssertionError("duplicate accepted");
            } catch (SQLException e) {
                check(e.getSQLState().equals("23505"), "sqlstate " + e.getSQLState());
                c.rollback();
            }
            DatabaseMetaData md = c.getMetaData();
            try (ResultSet r = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                check(r.next() && r.getString("TABLE_NAME").equals("j"), "getTables");
            }
            try (ResultSet r = md.getColumns(null, "public", "j", "%")) {
                StringBuilder cols = new StringBuilder();
                while (r.next()) cols.append(r.getString("COLUMN_NAME")).append(':').append(r.getString("TYPE_NAME")).append(' ');
                check(cols.toString().equals("id:int4 name:varchar amount:numeric at:timestamp "), "getColumns " + cols);
            }
        }
        System.out.println("ok");
    }
}
